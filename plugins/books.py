"""Built-in domain ``books``: a book's genre from its cover."""

from __future__ import annotations

import tagteller
from tagteller import Domain, FolderLayout
from tagteller_models import shipped_model
from tagteller_plugins.photo_recipes import LITE0, PHOTO_STOPPING

DOMAIN = Domain(
    name="books",
    description="Book genre from its cover.",
    labels=(
        "biography",
        "business-finance-law",
        "graphic-novels-anime-manga",
        "poetry-drama",
        "science-fiction-fantasy-horror",
    ),
    layout=FolderLayout(),
    # Covers carry text, and mirrored text is not a cover anyone prints: no flips.
    recipe=LITE0.with_(augmentation={"flip": False, "rotation": 0.02, "zoom": 0.1,
                                             "contrast": 0.1, "erasing": 0.0}),
    stopping=PHOTO_STOPPING,
    model_path=shipped_model("books"),
    data_source="Book Depository covers via kamilahmedaslam/Book-Genre-Predictor (MIT; cover art: research use)",
)


@tagteller.hookimpl
def register_domains(register):
    register(DOMAIN)
