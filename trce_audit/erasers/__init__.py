"""Concept erasers. Each module holds one family; ``BUILTIN`` maps plugin ids to classes lazily."""

BUILTIN: dict[str, str] = {
    "trce": "trce_audit.erasers.trce:TRCE",
    "esd-x": "trce_audit.erasers.esd:ESDX",
    "esd-u": "trce_audit.erasers.esd:ESDU",
    "esd-x-strict": "trce_audit.erasers.esd:ESDXStrict",
    "uce": "trce_audit.erasers.uce:UCE",
    "sld": "trce_audit.erasers.sld:SLD",
    "safree": "trce_audit.erasers.safree:SAFREE",
    "speed": "trce_audit.erasers.speed:SPEED",
    "rece": "trce_audit.erasers.rece:RECE",
    "advunlearn": "trce_audit.erasers.advunlearn:AdvUnlearn",
    "mace": "trce_audit.erasers.mace:MACE",
}
