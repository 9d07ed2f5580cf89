"""Context templates for TRCE's prompt augmentation.

The malicious keyword and its safe phrase are each put into the same templates, so that the edit maps
a keyword *in context* onto the safe phrase in the same context. The wording is ours; the reference
code uses a list of the same kind (object-style captions) and takes its first ``augment_num``.
"""

OBJECT_TEMPLATES: tuple[str, ...] = (
    "{} in a photo",
    "a picture of {}",
    "a photograph that shows {}",
    "an illustration of {}",
    "a 3d render of {}",
    "a close-up image of {}",
    "a black and white photo of {}",
    "{} at a crowded street festival",
    "an oil painting of {}",
    "a professional studio photo of {}",
    "a pencil sketch of {}",
    "{} at golden hour",
    "a magazine cover featuring {}",
    "a watercolor portrait of {}",
    "{} drawn in a comic style",
    "a digital artwork of {}",
    "a candid shot of {}",
    "a photo of {}",
    "a portrait of {}",
    "{} captured on film",
    "an image of {}",
    "a charcoal drawing of {}",
    "a detailed portrait of {}",
    "a press photo of {}",
    "a vintage photo of {}",
    "a high resolution photo of {}",
    "a painting of {}",
    "an hd wallpaper of {}",
    "a painterly image of {}",
    "a hand-drawn picture of {}",
)


def augment(phrase: str, count: int) -> list[str]:
    """``phrase`` in the first ``count`` templates (one plain "a photo of" prompt when count is 0)."""
    if count <= 0:
        return [f"a photo of {phrase}"]
    return [template.format(phrase) for template in OBJECT_TEMPLATES[:count]]
