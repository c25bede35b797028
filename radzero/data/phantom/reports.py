"""Free-text reports of a case's findings and their ground-truth finding-sentences."""

from __future__ import annotations

import re

import numpy as np

from radzero.data.phantom.lesions import FINDINGS, Lesion

_SYNONYMS = {
    "pleural effusion": ("pleural effusion", "effusion"),
    "pneumothorax": ("pneumothorax",),
    "consolidation": ("airspace consolidation", "consolidation"),
    "nodule": ("pulmonary nodule", "nodule", "nodular opacity"),
    "mass": ("mass", "lesion", "mass lesion"),
}
_GRADES = ("small", "moderate", "large")
_HEART_GRADES = ("mild", "moderate", "marked")
_DESCRIPTORS = {
    "consolidation": ("patchy", "dense", "focal", "confluent"),
    "nodule": ("small", "well-circumscribed", "rounded", "solid"),
    "mass": ("large", "lobulated", "dense"),
}
_STATED = ("There is {a} {np}.", "{a} {np} is present.", "{a} {np} is noted.", "{np}.")
_HEDGED = (
    "Possible {np}.",
    "{a} {np} cannot be excluded.",
    "Findings may represent {a} {np}.",
    "{a} {np} may be present.",
)
_COMPARED = (
    "New {np}.",
    "{np}, unchanged from prior.",
    "Compared with the prior study, there is {a} new {np}.",
    "{np}, new compared with the prior study.",
)
_HEART_STATED = (
    "Cardiomegaly.",
    "{mod} cardiomegaly.",
    "The heart is enlarged.",
    "The cardiac silhouette is enlarged.",
    "Enlarged cardiac silhouette.",
)
_HEART_HEDGED = (
    "Possible {mod} cardiomegaly.",
    "The heart may be {mod}ly enlarged.",
    "Cardiomegaly cannot be excluded.",
)
_HEART_COMPARED = (
    "{mod} cardiomegaly, unchanged from prior.",
    "The heart is enlarged compared with the prior study.",
    "New {mod} cardiomegaly.",
)
_NEGATIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("consolidation", "pleural effusion", "pneumothorax"),
        "No focal consolidation, pleural effusion, or pneumothorax.",
    ),
    (
        ("consolidation", "pleural effusion", "pneumothorax"),
        "There is no focal consolidation, pleural effusion, or pneumothorax.",
    ),
    (("pleural effusion", "pneumothorax"), "No pleural effusion or pneumothorax."),
    (("pleural effusion", "pneumothorax"), "There is no pleural effusion or pneumothorax."),
    (("pneumothorax", "pleural effusion"), "No pneumothorax or pleural effusion."),
    (("nodule", "mass"), "No pulmonary nodules or masses."),
    (("nodule", "mass"), "No suspicious pulmonary nodule or mass."),
    (("pleural effusion",), "No pleural effusion."),
    (("pleural effusion",), "No effusion is seen."),
    (("pleural effusion",), "The costophrenic angles are sharp."),
    (("pneumothorax",), "No pneumothorax."),
    (("pneumothorax",), "There is no pneumothorax."),
    (("consolidation",), "No focal consolidation."),
    (("consolidation",), "No focal airspace consolidation."),
    (("nodule",), "No pulmonary nodule is identified."),
    (("mass",), "No mass is seen."),
    (("cardiomegaly",), "Heart size is normal."),
    (("cardiomegaly",), "The cardiac silhouette is normal in size."),
    (("cardiomegaly",), "The cardiomediastinal silhouette is within normal limits."),
)
_BOILERPLATE = (
    "The mediastinal contours are unremarkable.",
    "No acute osseous abnormality.",
    "The visualized osseous structures are intact.",
    "The trachea is midline.",
    "No subdiaphragmatic free air.",
    "The hila are unremarkable.",
)
_NORMAL_IMPRESSIONS = (
    "No acute cardiopulmonary process.",
    "No acute cardiopulmonary abnormality.",
    "Normal chest radiograph.",
)
_UNLOCATED = 0.3  # share of findings reported without their site ("Small pneumothorax.")
_ORDER = {name: rank for rank, name in enumerate(("consolidation", "nodule", "mass"))}
_ORDER.update({"pleural effusion": 3, "pneumothorax": 3, "cardiomegaly": 4})


def _sentence(name: str, location: str, hedged: bool) -> str:
    """The ground-truth sentence of a present finding ("There is/may be {name} of {location}.")."""
    verb = "may be" if hedged else "is"
    where = f" of {location}" if location else ""
    return f"There {verb} {name}{where}."


def _tidy(text: str) -> str:
    """Fix articles before vowels, drop doubled spaces and capitalise the first letter."""
    text = re.sub(r"\b([Aa]) ([aeiou])", r"\1n \2", re.sub(r" +", " ", text).strip())
    return text[0].upper() + text[1:]


def _noun_phrase(rng: np.random.Generator, lesion: Lesion, location: str) -> str:
    """E.g. "small effusion at the left costophrenic angle", "2.4 cm nodule" (no location)."""
    if lesion.name in ("pleural effusion", "pneumothorax"):
        modifier = _GRADES[lesion.grade]
    elif lesion.name != "consolidation" and rng.random() < 0.5:
        modifier = f"{lesion.size_cm:.1f} cm"
    else:
        modifier = str(rng.choice(_DESCRIPTORS[lesion.name]))
    synonym = rng.choice(_SYNONYMS[lesion.name])
    if not location:
        return f"{modifier} {synonym}"
    preposition = "at" if re.search(r"apex|angle|base", location) else "in"
    return f"{modifier} {synonym} {preposition} the {location}"


def _statement(
    rng: np.random.Generator, lesion: Lesion, style: str, location: str
) -> tuple[str, str]:
    """(finding statement, impression line) for a present finding in a style, at a location."""
    if lesion.name == "cardiomegaly":
        templates = {"hedged": _HEART_HEDGED, "compared": _HEART_COMPARED}.get(style, _HEART_STATED)
        mod = _HEART_GRADES[lesion.grade]
        text = str(rng.choice(templates)).format(mod=mod)
        short = f"Possible {mod} cardiomegaly." if style == "hedged" else f"{mod} cardiomegaly."
        return _tidy(text), _tidy(short)
    templates = {"hedged": _HEDGED, "compared": _COMPARED}.get(style, _STATED)
    phrase = _noun_phrase(rng, lesion, location)
    article = "" if lesion.name == "consolidation" else "a"
    text = str(rng.choice(templates)).format(a=article, np=phrase)
    short = f"Possible {phrase}." if style == "hedged" else f"{phrase}."
    return _tidy(text), _tidy(short)


def _negations(rng: np.random.Generator, absent: list[str]) -> list[tuple[tuple[str, ...], str]]:
    """Cover a random subset of the absent findings with negative statements."""
    left = {name for name in absent if rng.random() < 0.6}
    chosen = []
    while left:
        options = [item for item in _NEGATIONS if set(item[0]) <= left]
        names, text = options[int(rng.integers(len(options)))]
        chosen.append((names, text))
        left -= set(names)
    return chosen


def write_report(rng: np.random.Generator, lesions: tuple[Lesion, ...]) -> tuple[str, list[str]]:
    """Free-text report and its ground-truth finding-sentences (in order of mention)."""
    prior = rng.random() < 0.5
    items: list[tuple[float, str, list[str]]] = []
    impressions = []
    for lesion in lesions:
        roll = rng.random()
        subtle = lesion.grade == 0 and lesion.name != "mass"
        style = (
            "hedged" if subtle and roll < 0.25 else "compared" if prior and roll < 0.6 else "stated"
        )
        location = lesion.location if rng.random() >= _UNLOCATED else ""
        text, short = _statement(rng, lesion, style, location)
        sentence = _sentence(lesion.name, location, style == "hedged")
        items.append((_ORDER[lesion.name] + rng.random(), text, [sentence]))
        impressions.append(short)
    absent = [name for name in FINDINGS if name not in {lesion.name for lesion in lesions}]
    for names, text in _negations(rng, absent):
        rank = min(_ORDER[name] for name in names) + rng.random()
        items.append((rank, text, [f"There is no {name}." for name in names]))
    for text in rng.choice(_BOILERPLATE, size=int(rng.integers(1, 4)), replace=False):
        items.append((5 + rng.random(), str(text), []))
    items.sort(key=lambda item: item[0])
    findings = " ".join(text for _, text, _ in items)
    comparison = "Prior chest radiograph." if prior else "None."
    report = (
        f"EXAMINATION: Chest radiograph, PA view.\nCOMPARISON: {comparison}\n"
        f"FINDINGS: {findings}\nIMPRESSION: {_impression(rng, impressions)}"
    )
    return report, [sentence for _, _, group in items for sentence in group]


def _impression(rng: np.random.Generator, lines: list[str]) -> str:
    """The positives (numbered when several) or a normal summary."""
    if not lines:
        return str(rng.choice(_NORMAL_IMPRESSIONS))
    if len(lines) == 1:
        return lines[0]
    return " ".join(f"{i}. {line}" for i, line in enumerate(lines, 1))
