"""Built-in domain ``shoes``: the brand of a shoe from a product photo."""

from __future__ import annotations

import tagteller
from tagteller import Domain, FolderLayout
from tagteller_models import shipped_model
from tagteller.text_cues import TextCue, TextCues
from tagteller_plugins.photo_recipes import LITE1, PHOTO_STOPPING

#: Brand names as OCR reads them on these product shots (scripts/text_cues_eval.py --mine): the
#: names, and "conv" (the CONV print on a Converse heel: 5 training photos, no other brand's). Not
#: declared: "air" (9 Nike photos, but a fuzzy read of it fired on a Converse photo and it hides
#: in "pair", "chair") and "star" (All Star, but also adidas Superstar). They cover 2-3% of photos.
TEXT_CUES = TextCues((TextCue("adidas", ("adidas",)), TextCue("converse", ("converse", "conv")),
                      TextCue("nike", ("nike",))))

DOMAIN = Domain(
    name="shoes",
    description="Shoe brand from a product photo.",
    labels=("adidas", "converse", "nike"),
    layout=FolderLayout(),
    # Brand cues are small (a swoosh, three stripes): random erasing, so that no single detail is
    # relied on. Lite1 at 240 px over repeated splits against Lite0 and others: docs/training.md.
    recipe=LITE1.with_(augmentation={**LITE1.augmentation, "erasing": 0.2}),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("shoes"),
    data_source="Kaggle 'Nike, Adidas and Converse Shoes Images' via akkik04/Kutsu (research use)",
    text_cues=TEXT_CUES,
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
