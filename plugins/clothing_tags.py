"""Built-in domain ``clothing-tags``: the brand on a clothing tag or logo.

Users add brands from their own photos (``allow_new_labels``). The dataset is a CSV manifest with
a group per source photo, so crops of one photo never sit on both sides of the split.
"""

from __future__ import annotations

import tagteller
from tagteller import CsvManifestLayout, Domain
from tagteller_models import shipped_model
from tagteller.text_cues import TextCue, TextCues
from tagteller_plugins.photo_recipes import LITE0, PHOTO_STOPPING

#: The brand names as OCR reads them on these photos (scripts/text_cues_eval.py --mine: the only
#: words found on 2+ training photos of one brand and on no photo of another, besides misreads:
#: "odidas", which fuzzy matching covers, and "uma", which it does not, as 4-letter words match
#: exactly only). Logos are not text: the recogniser reads the Adidas stripes as CJK characters
#: (三, at scores under 0.5) and the swoosh as nothing, so no logo shape is a cue.
TEXT_CUES = TextCues((TextCue("adidas", ("adidas",)), TextCue("nike", ("nike",)), TextCue("puma", ("puma",))))

DOMAIN = Domain(
    name="clothing-tags",
    description="Brand from a photo of a clothing tag or logo.",
    labels=("adidas", "nike", "puma"),
    layout=CsvManifestLayout(manifest="manifest.csv", path_column="path", label_column="brand",
                             group_column="group"),
    # A mirrored logo is not the brand's logo: no flips.
    recipe=LITE0.with_(augmentation={"flip": False, "rotation": 0.05, "zoom": 0.15,
                                             "contrast": 0.15, "erasing": 0.0}),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("clothing-tags"),
    allow_new_labels=True,
    data_source="FlickrLogos-27 (research use) and a Roboflow logo export (CC BY 4.0), cropped",
    text_cues=TEXT_CUES,
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
