"""Rule-based extraction of RadZero finding-sentences from free-text chest X-ray reports.

``extract_findings`` turns a report into sentences in the three templates of the RadZero paper:
"There is {finding} of {location}.", "There may be {finding} of {location}." and
"There is no {finding} of {location}.", with " of {location}" left out when the report gives
none. The rules, in the order they run:

Sections
    The FINDINGS and IMPRESSION (or CONCLUSION, SUMMARY, ...) sections are used. Without either,
    the whole text is used except the bodies of recognised other sections (INDICATION, HISTORY,
    TECHNIQUE, COMPARISON, EXAMINATION, ...), each of which ends at the next header or blank line.

Sentences and clauses
    Sentences end at ".", "?", "!", ";" followed by space, at blank lines and before numbered or
    bulleted list items; decimals ("2.8 cm") and abbreviations ("approx.", "Dr.", "vs.") do not
    end sentences, and a wrapped line continues its sentence unless the next line starts a new
    capitalised one. Clauses end at "but", "however", "although", "except", "which", a new
    subject after "and"/a comma ("and the ...", ", there is ...") and similar words.

Findings
    Each vocabulary phrase maps to one canonical name (``FINDINGS_VOCABULARY``); overlapping
    phrases resolve to the longest ("nodular opacity" is a nodule, "subcutaneous emphysema" is not
    emphysema). A bare "lesion" counts as a mass, "lung lesion" as the CheXpert "lung lesion".
    Normal statements imply absent findings: a normal heart, cardiac silhouette or
    cardiomediastinal silhouette -> no cardiomegaly (the last also no enlarged
    cardiomediastinum), normal mediastinal contours -> no enlarged cardiomediastinum, normal hila
    -> no hilar enlargement, sharp costophrenic angles -> no pleural effusion, clear lungs -> no
    consolidation, intact or normal bones -> no fracture, normal pulmonary vascularity -> no
    vascular congestion, "extubated" -> no endotracheal tube.

Negation and uncertainty
    Cues are negating ("no", "without", "free of", "not seen", "has resolved", "removed", ...) or
    hedging ("may", "possible", "likely", "cannot be excluded", "suspicious for", "versus", ...)
    and act forwards ("no X, Y or Z"), backwards ("X and Y cannot be excluded") or both
    ("X versus Y"), never beyond their clause. A cue inside a phrase ("the heart may be enlarged",
    "the heart is not enlarged") decides it. Otherwise the nearest following cue decides if it
    acts backwards and reaches the finding: not past a forward cue, past a comma or "with" only
    within a list ("A, B, or C cannot be excluded"), and for "versus" only from the finding right
    before it. Then the nearest preceding forward cue decides; otherwise the finding is present. A
    hedge right after a negation with no finding in between ("no findings suggestive of
    pneumonia") does not undo the negation.
    Temporal wording never reaches the output: "improved", "unchanged", "no change in",
    "partially resolved" leave a finding present, while "resolved" / "resolution of" negate it.

Locations
    Location words right before a finding ("left retrocardiac opacity", "bibasilar atelectasis")
    and in a prepositional phrase right after it ("at the left apex", "in the lingula") are
    normalised to side (right / left / bilateral) + region: "right upper lobe", "right middle
    lobe", "lingula", "left mid zone", "right lung base", "left apex", "right costophrenic angle",
    "left hemithorax", "left retrocardiac region", "right perihilar region", "right hilum", ...
    Plural regions without a side are bilateral ("at the bases" -> "bilateral lung bases").
    A side without a region takes the finding's default region: "hemithorax" for pleural and
    chest-wall findings ("left pleural effusion" -> "left hemithorax"), "hilum" for hilar ones and
    "lung" otherwise ("bilateral opacities" -> "bilateral lungs"). Devices and whole-organ findings
    (cardiomegaly, hyperinflation, ...) never get a location. Grades and sizes are dropped.

Merging
    Identical (finding, status, location) triples are merged. A mention without location is
    dropped when a located mention of the same finding is at least as certain (present > may be >
    absent). A negative mention without location is dropped when the same finding is reported
    present or possible anywhere (it was an "otherwise" or grade-qualified statement such as "no
    large effusion"). For the same finding at the same location only the most certain status is
    kept, since the positive statement is the specific one. Sentences follow the order of first
    mention.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

_PRESENT, _UNCERTAIN, _ABSENT = "present", "uncertain", "absent"
_RANK = {_ABSENT: 0, _UNCERTAIN: 1, _PRESENT: 2}
_TEMPLATES = {_PRESENT: "There is {}", _UNCERTAIN: "There may be {}", _ABSENT: "There is no {}"}


def _word_set(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text``."""
    return frozenset(text.split())


_OPACITY = r"opacit(?:y|ies)"
_CP_ANGLE = r"(?:costophrenic|cp) (?:angles?|sulc(?:us|i))"
_HEART = r"(?:heart|cardiac (?:silhouette|shadow|size|contours?))"

# (canonical name, regex of its phrases); a name may appear in several entries. A named group
# "where" marks location words inside the phrase ("blunting of the left costophrenic angle").
_FINDING_PHRASES: tuple[tuple[str, str], ...] = (
    (
        "enlarged cardiomediastinum",
        r"enlarge(?:d|ment of the) cardiomediastin(?:um|al (?:silhouette|contours?))"
        r"|cardiomediastin(?:um|al (?:silhouette|contours?)) (?:\w+ ){0,3}?(?:enlarged|widened)"
        r"|widen(?:ed|ing of the) (?:superior )?mediastin(?:um|al (?:silhouette|contours?))"
        r"|mediastinal (?:widening|enlargement)"
        r"|mediastin(?:um|al (?:silhouette|contours?)) (?:\w+ ){0,3}?(?:widened|enlarged)",
    ),
    (
        "cardiomegaly",
        r"cardiomegaly|cardiac enlargement"
        rf"|enlarge(?:d|ment of the) {_HEART}"
        rf"|{_HEART}(?: size)? (?:\w+ ){{0,4}}?(?:enlarged|enlargement|increased)",
    ),
    ("opacity", rf"(?:lung |pulmonary )?(?:{_OPACITY}|opacification|opacified)"),
    ("opacity", r"air ?space (?:disease|process)|haziness"),
    ("opacity", rf"ground[- ]glass(?: {_OPACITY}| opacification)?"),
    ("lung lesion", r"(?:lung|pulmonary) lesions?"),
    ("edema", r"(?:pulmonary |interstitial |alveolar )?edema|fluid overload"),
    ("edema", r"(?:congestive )?heart failure|chf"),
    (
        "consolidation",
        rf"(?:air ?space )?consolidations?|consolidative (?:{_OPACITY}|process|changes?)"
        r"|consolidated",
    ),
    (
        "pneumonia",
        r"(?:aspiration |lobar |multifocal )?(?:broncho)?pneumonias?|pneumonitis"
        r"|infection|infectious (?:process|etiology)|aspiration",
    ),
    (
        "atelectasis",
        rf"atelecta(?:sis|ses|tic (?:changes?|{_OPACITY}))|atelectatic"
        r"|(?:lobar |segmental )?collapsed?|volume loss",
    ),
    ("pneumothorax", r"(?:hydro)?pneumothora(?:x|ces)|ptx"),
    (
        "pleural effusion",
        r"(?:pleural )?effusions?|pleural fluid|hydrothora(?:x|ces)|blunt(?:ing|ed)",
    ),
    ("pleural effusion", rf"blunt(?:ing|ed) of (?:the )?(?P<where>(?:\w+ ){{0,2}}?{_CP_ANGLE})"),
    ("pleural effusion", rf"blunted (?P<where>(?:\w+ ){{0,2}}?{_CP_ANGLE})"),
    (
        "pleural effusion",
        rf"(?P<where>{_CP_ANGLE}) (?:(?:is|are|remains?) )?(?:\w+ly )?blunt(?:ed|ing)",
    ),
    (
        "pleural thickening",
        r"pleural (?:thickening|plaques?|scarring)|thickened pleura"
        r"|pleural[- ]parenchymal scarring",
    ),
    ("pleural thickening", r"(?P<where>apical) (?:pleural )?caps?"),
    (
        "fracture",
        r"fractures?|fractured|compression deformit(?:y|ies)"
        r"|(?:rib|clavicular|clavicle|vertebral|compression) fractures?",
    ),
    ("infiltration", rf"infiltrat(?:es?|ions?|ive (?:process|{_OPACITY}|changes?))"),
    ("mass", r"mass(?:es)?|mass lesions?|lesions?|tumou?rs?|neoplasms?"),
    ("mass", rf"mass[- ]?like (?:{_OPACITY}|consolidation|lesions?)"),
    (
        "nodule",
        rf"(?:pulmonary |lung )?nodules?|nodularity|micronodules?"
        rf"|nodular (?:{_OPACITY}|densit(?:y|ies)|opacification|lesions?|foc(?:us|i))",
    ),
    ("emphysema", r"emphysema|emphysematous(?: changes?)?"),
    (
        "fibrosis",
        rf"(?:pulmonary |interstitial )?fibrosis|fibrotic(?: changes?| scarring| {_OPACITY})?",
    ),
    (
        "hernia",
        r"(?:hiatal|hiatus|diaphragmatic|paraesophageal) hernias?|hernias?|herniation",
    ),
    (
        "calcification",
        r"calcifications?|calcified (?:lymph )?nodes?|calcified (?:aorta|aortic knob)",
    ),
    ("granuloma", r"(?:calcified )?granulomas?|granulomata|granulomatous (?:disease|changes?)"),
    ("scarring", r"scarring|scars?"),
    (
        "hyperinflation",
        r"hyperinflat(?:ion|ed)|hyperexpan(?:sion|ded)|hyperaerat(?:ion|ed)|overinflat(?:ion|ed)",
    ),
    (
        "vascular congestion",
        r"(?:pulmonary )?(?:vascular|venous) (?:congestion|engorgement|redistribution)"
        r"|(?:pulmonary )?vascular prominence|congestion|engorgement|cephalization"
        r"|pulmonary venous hypertension",
    ),
    (
        "hilar enlargement",
        r"hilar (?:enlargement|prominence|fullness)"
        r"|enlarge(?:d|ment of the) hil(?:a|um|ar (?:contours?|shadows?))"
        r"|prominen(?:t|ce of the) hil(?:a|um)"
        r"|hil(?:a|um|ar contours?) (?:\w+ ){0,2}?(?:enlarged|prominent)",
    ),
    ("lymphadenopathy", r"(?:lymph)?adenopathy|enlarged (?:lymph )?nodes?|lymph node enlargement"),
    ("subcutaneous emphysema", r"(?:subcutaneous|soft tissue) (?:emphysema|air|gas)"),
    (
        "pneumoperitoneum",
        r"pneumoperitoneum|free (?:intraperitoneal |intra-abdominal |subdiaphragmatic )?(?:air|gas)"
        r"|(?:subdiaphragmatic|intraperitoneal) (?:free )?(?:air|gas)",
    ),
    ("pneumomediastinum", r"pneumomediastinum|mediastinal (?:air|emphysema)"),
    ("pericardial effusion", r"pericardial effusions?"),
    ("bronchiectasis", r"bronchiectasis|bronchiectatic(?: changes?)?"),
    ("cavitation", r"cavitation|cavit(?:y|ies)|cavitary (?:lesions?|mass(?:es)?|nodules?)"),
    ("interstitial lung disease", r"interstitial lung disease|ild"),
    (
        "elevated hemidiaphragm",
        r"elevat(?:ed|ion of the) (?:right |left )?hemidiaphragms?"
        r"|hemidiaphragms? (?:(?:is|are|remains?) )?(?:\w+ly )?elevated",
    ),
    (
        "tortuous aorta",
        r"tortuous (?:thoracic )?aorta|tortuosity of the (?:thoracic )?aorta|aortic tortuosity"
        r"|unfold(?:ed|ing of the) (?:thoracic )?aorta",
    ),
    (
        "aortic enlargement",
        r"enlarged (?:thoracic )?aorta|dilated (?:thoracic )?aorta"
        r"|aortic (?:enlargement|dilat(?:at)?ion|ectasia|aneurysm)",
    ),
    ("scoliosis", r"scoliosis|scoliotic curvature"),
    (
        "support device",
        r"support devices?|(?:lines|tubes),? and (?:tubes|lines|catheters)"
        r"|monitoring (?:and support )?devices|medical devices",
    ),
    ("endotracheal tube", r"endotracheal(?: tubes?)?|et tubes?|ett(?: tubes?)?|intubat(?:ed|ion)"),
    ("tracheostomy tube", r"tracheostomy(?: tubes?| cannula)?|trach tubes?"),
    (
        "nasogastric tube",
        r"(?:naso|oro)gastric tubes?|(?:ng|og|ngt|ogt) tubes?|ngt|ogt"
        r"|(?:naso)?(?:enteric|gastric|feeding) tubes?|dobb?hoff(?: tubes?)?|dubhoff"
        r"|naso(?:duodenal|jejunal) tubes?",
    ),
    (
        "central venous catheter",
        r"central (?:venous )?(?:catheters?|lines?)|cvc"
        r"|(?:internal jugular|ij|subclavian|femoral)(?: central venous| venous| central)?"
        r" (?:catheters?|lines?)"
        r"|(?:hemo)?dialysis (?:catheters?|lines?)|port[- ]?a[- ]?cath|mediport|chest port",
    ),
    (
        "peripherally inserted central catheter",
        r"picc(?: lines?| catheters?)?|peripherally inserted central (?:venous )?catheters?",
    ),
    (
        "pulmonary artery catheter",
        r"swan[- ]?ganz(?: catheters?)?|pulmonary arter(?:y|ial) catheters?|pa (?:catheter|line)s?",
    ),
    (
        "chest tube",
        r"chest (?:tubes?|drains?)|thoracostomy tubes?|pleural (?:drains?|catheters?|tubes?)"
        r"|pigtail(?: pleural)?(?: catheters?| drains?)?|pleurx(?: catheters?)?",
    ),
    (
        "pacemaker",
        r"(?:cardiac )?pacemakers?|pacers?|pacing (?:leads?|wires?|devices?)|a?icds?"
        r"|(?:implantable )?(?:cardioverter[- ])?defibrillators?"
        r"|(?:pacemaker|pacer|icd) leads?|cardiac resynchronization device",
    ),
    (
        "sternotomy wires",
        r"(?:median )?sternotomy(?: wires?| sutures?)?|sternal (?:cerclage )?(?:wires?|sutures?)",
    ),
    ("surgical clips", r"(?:surgical |vascular |cabg )?clips?"),
    ("intra-aortic balloon pump", r"intra-?aortic balloon(?: pump)?|iabp|balloon pump"),
    (
        "prosthetic valve",
        r"(?:prosthetic|mechanical|bioprosthetic) (?:aortic |mitral |tricuspid )?valves?"
        r"|(?:aortic |mitral |tricuspid )?valve (?:replacement|prosthesis)|tavr|tavi",
    ),
    ("stent", r"stents?"),
)

# Phrases that look like findings but are not ("mass effect", "lytic lesion").
_NOT_FINDINGS = re.compile(
    r"\b(?:mass effect|(?:lytic|sclerotic|blastic|osseous|bony|skin|cutaneous|soft tissue)"
    r" lesions?|(?:soft tissue|subcutaneous) edema)\b"
)

# Canonical names of support devices (sentences about them never carry a location).
DEVICE_VOCABULARY: tuple[str, ...] = (
    "support device",
    "endotracheal tube",
    "tracheostomy tube",
    "nasogastric tube",
    "central venous catheter",
    "peripherally inserted central catheter",
    "pulmonary artery catheter",
    "chest tube",
    "pacemaker",
    "sternotomy wires",
    "surgical clips",
    "intra-aortic balloon pump",
    "prosthetic valve",
    "stent",
)
# Every canonical name, findings and devices, in vocabulary order.
FINDINGS_VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in _FINDING_PHRASES))

# Benchmark class names that are not phrases of any finding (CheXpert "Pleural Other").
_CLASS_ALIASES = {"pleural other": "pleural thickening"}

_PLEURAL_OR_WALL = frozenset(
    {
        "pleural effusion",
        "pneumothorax",
        "pleural thickening",
        "fracture",
        "subcutaneous emphysema",
    }
)
_HILAR = frozenset({"hilar enlargement", "lymphadenopathy"})
_NEVER_LOCATED = frozenset(DEVICE_VOCABULARY) | {
    "cardiomegaly",
    "enlarged cardiomediastinum",
    "pericardial effusion",
    "pneumoperitoneum",
    "pneumomediastinum",
    "hernia",
    "tortuous aorta",
    "aortic enlargement",
    "scoliosis",
    "hyperinflation",
    "vascular congestion",
    "elevated hemidiaphragm",
}

_COMPILED_PHRASES = tuple((name, re.compile(rf"\b(?:{rx})\b")) for name, rx in _FINDING_PHRASES)

# ------------------------------------------------------------------------------ normal statements

_NORMAL = (
    r"(?<!top )(?<!top-)(?<!high )(?<!high-)(?<!upper )(?<!low )(?<!near )(?<!borderline )"
    r"(?<!of )(?<!not )\b(?:normal|unremarkable|within normal limits)\b"
)
_IMPLIED_ABSENT: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(rx), names)
    for rx, names in (
        (
            rf"\b(?:{_HEART}|cardiac(?= (?:and|,) ))\b.*?{_NORMAL}|\bnormal (?:heart|cardiac)\b",
            ("cardiomegaly",),
        ),
        (
            rf"\bcardiomediastinal\b.*?{_NORMAL}|\bnormal cardiomediastinal\b",
            ("cardiomegaly", "enlarged cardiomediastinum"),
        ),
        (
            rf"\bmediastin(?:al|um)\b(?! air| emphysema).*?{_NORMAL}|\bnormal mediastin",
            ("enlarged cardiomediastinum",),
        ),
        (rf"\bhil(?:a|um|ar)\b.*?{_NORMAL}|\bnormal hil(?:a|um|ar)\b", ("hilar enlargement",)),
        (
            rf"\b{_CP_ANGLE}\b.*?\b(?:sharp|sharply|clear|normal|preserved|crisp)\b"
            rf"|\bsharp {_CP_ANGLE}",
            ("pleural effusion",),
        ),
        (
            r"\b(?:lungs?|lung fields|lung parenchyma)\b(?! volumes?).*?\bclear\b(?! of)"
            r"|\bclear lungs?\b",
            ("consolidation",),
        ),
        (
            r"\b(?:osseous|bony|skeletal)\b.*?\b(?:intact|unremarkable|normal)\b"
            r"|\bno (?:\w+ ){0,2}?(?:osseous|bony|skeletal) abnormalit(?:y|ies)\b",
            ("fracture",),
        ),
        (
            rf"\b(?:pulmonary vascula(?:rity|ture)|vascular markings)\b.*?{_NORMAL}"
            r"|\bnormal pulmonary vascula(?:rity|ture)\b",
            ("vascular congestion",),
        ),
        (r"\bextubat(?:ed|ion)\b", ("endotracheal tube",)),
    )
)

# ------------------------------------------------------------------------------------- cues

_FORWARD, _BACKWARD, _BOTH = "forward", "backward", "both"
_CLAUSE_END = r"(?=\s*(?:[,.;:]|$))"
_CUE_TABLE: tuple[tuple[str, str, str], ...] = (
    # hedges that act backwards ("... cannot be excluded")
    (
        r"(?:cannot|can not|can't|could not|couldn't|not) (?:be )?(?:\w+ly )?"
        r"(?:excluded|ruled out)",
        _UNCERTAIN,
        _BACKWARD,
    ),
    (
        r"(?:may|might|could) (?:also )?be (?:present|seen|noted|identified|demonstrated|possible)",
        _UNCERTAIN,
        _BACKWARD,
    ),
    (
        r"(?:is|are) (?:also |more |most )?(?:possible|likely|probable|suspected|questioned"
        rf"|questionable|considered|suggested|a (?:possibility|consideration)){_CLAUSE_END}",
        _UNCERTAIN,
        _BACKWARD,
    ),
    (rf"(?:possible|likely|suspected|questioned|probable){_CLAUSE_END}", _UNCERTAIN, _BACKWARD),
    # hedges that act forwards
    (
        r"(?:cannot|can not|can't|could not|not) (?:exclude|rule out)|rule out|to exclude"
        r"|(?:evaluate|assess|correlate|correlation) for|differential(?: diagnosis)?"
        r"|suspicio(?:us|n) (?:for|of)|concerning for|concern for|worrisome for"
        r"|suggestive of|suggests?|suggesting|question of|favou?r(?:s|ed|ing)?",
        _UNCERTAIN,
        _FORWARD,
    ),
    (
        r"may|might|could|possible|possibly|probable|probably|likely|presumed|presumably"
        r"|presumptive|suspected|questionable|borderline|equivocal|perhaps|maybe|uncertain",
        _UNCERTAIN,
        _FORWARD,
    ),
    (r"versus|vs\.?", _UNCERTAIN, _BOTH),
    # negations that act backwards ("... is not seen", "... has resolved")
    (
        r"(?:(?:is|are|was|were|has been|have been) )?not (?:\w+ly )?(?:seen|identified"
        r"|visualized|visible|appreciated|evident|present|demonstrated|noted|detected|apparent"
        r"|observed|shown)",
        _ABSENT,
        _BACKWARD,
    ),
    (
        r"no longer (?:\w+ )?(?:seen|present|visualized|visible|identified|evident|appreciated"
        r"|demonstrated|apparent|noted|detected)",
        _ABSENT,
        _BACKWARD,
    ),
    (
        r"(?:has|have|had|is|are|was|were|been) (?:since |now |\w+ly )?(?:resolved|removed)"
        r"|(?:is|are|was|were|has been|have been) (?:excluded|ruled out|absent|negative)",
        _ABSENT,
        _BACKWARD,
    ),
    (rf"(?:resolved|removed|absent){_CLAUSE_END}", _ABSENT, _BACKWARD),
    (r"unlikely", _ABSENT, _BOTH),
    # negations that act forwards
    (
        r"no|not|without|free of|clear of|negative for|absence of|resolution of|removal of"
        r"|rather than|neither|nor|resolved",
        _ABSENT,
        _FORWARD,
    ),
)
_CUES = tuple(
    (re.compile(rf"(?<![\w-])(?:{rx})(?![\w-])"), kind, direction)
    for rx, kind, direction in _CUE_TABLE
)

# Wording that only compares with a prior study and must not read as a cue.
_TEMPORAL = re.compile(
    r"\b(?:no|without) (?:(?:significant|substantial|appreciable|definite|major|interval|other"
    r"|further|acute|marked|notable|gross) )*(?:change|changes|worsening|progression|improvement"
    r"|increase|decrease|difference)\b"
    r"|\bnot (?:\w+ly )?(?:changed|worsened|improved|increased|decreased)\b"
    r"|\b(?:near(?:ly)?|almost|partial(?:ly)?|incomplete(?:ly)?|near[- ]complete(?:ly)?|largely"
    r"|mostly|significantly|substantially|considerably|somewhat|not (?:completely|fully|entirely))"
    r" resolv(?:ed|ing)\b"
    r"|\b(?:near(?:ly)?[- ]complete|partial|incomplete|some|slight|minimal|mild|gradual|ongoing"
    r"|continued) resolution(?: of)?\b"
    r"|\bto (?:suggest|indicate|explain)\b"
)

# ------------------------------------------------------------------------------------- text

_KEPT_SECTIONS = frozenset(
    {
        "findings",
        "finding",
        "impression",
        "impressions",
        "conclusion",
        "conclusions",
        "summary",
        "opinion",
        "interpretation",
        "findings and impression",
        "findings and impressions",
        "impression and findings",
    }
)
_OTHER_SECTIONS = frozenset(
    {
        "indication",
        "indications",
        "clinical indication",
        "history",
        "clinical history",
        "history and indication",
        "reason for exam",
        "reason for examination",
        "reason for study",
        "reason",
        "technique",
        "comparison",
        "comparisons",
        "examination",
        "exam",
        "type of examination",
        "procedure",
        "study",
        "clinical information",
        "clinical data",
        "clinical details",
        "notification",
        "recommendation",
        "recommendations",
        "addendum",
        "wet read",
        "final report",
        "preliminary report",
        "date",
        "views",
    }
)
# A label opening a line or sentence, a bare FINDINGS line, or an upper-case FINDINGS: anywhere.
_HEADER = re.compile(
    r"(?im)(?:^|(?<=[.!?] ))[ \t]*(?P<name>[a-z][a-z /&]{0,40}?)[ \t]*:"
    r"|^[ \t]*(?P<bare>findings|impressions?|conclusions?)[ \t]*$"
    r"|(?-i:\b(?P<upper>FINDINGS|IMPRESSIONS?|CONCLUSIONS?)[ \t]*:)"
)
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)](?=\s|$)|[-*•](?=\s))\s*")
_BREAK = re.compile(r"(?<=[.!?;])\s+|\n+")
_ABBREVIATION = re.compile(
    r"(?i)\b(?:approx|dr|mr|mrs|ms|prof|vs|cf|figs?|st|pt|incl|esp|resp|sr|jr|ca|e\.g|i\.e)\.$"
)
_WRAP_WORDS = _word_set("a an and at by for from in no of on or than the to with without")
_CLAUSE_BREAK = re.compile(
    r"\s*;\s*"
    r"|,?\s+(?=(?:but|however|although|though|whereas|while|yet|except|apart from|aside from"
    r"|other than|which|with the exception of)\b)"
    r"|,?\s+(?=and (?:a|an|the|there)\b)"
    r"|,\s*(?=(?:with )?(?:a|an|the|this|these)\b)"
    r"|,?\s+(?=there (?:is|are|has|have|was|were)\b)"
)
_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?|[^\sa-z0-9]")

# ---------------------------------------------------------------------------------- locations

_SIDE_WORDS = {
    "right": "right",
    "left": "left",
    "bilateral": "bilateral",
    "bilaterally": "bilateral",
    "both": "bilateral",
}
_SIDED_REGIONS = {
    "bibasilar": "base",
    "bibasal": "base",
    "bibasally": "base",
    "biapical": "apex",
}
_VERTICALS = {"upper": "upper", "mid": "mid", "middle": "mid", "lower": "lower", "midlung": "mid"}
_REGION_WORDS = {
    "lobe": ("lobe", False),
    "lobes": ("lobe", True),
    "zone": ("zone", False),
    "zones": ("zone", True),
    "field": ("lung", False),
    "fields": ("lung", True),
    "lung": ("lung", False),
    "lungs": ("lung", True),
    "base": ("base", False),
    "bases": ("base", True),
    "basilar": ("base", False),
    "basal": ("base", False),
    "basally": ("base", False),
    "apex": ("apex", False),
    "apices": ("apex", True),
    "apical": ("apex", False),
    "apically": ("apex", False),
    "costophrenic": ("costophrenic", False),
    "cp": ("costophrenic", False),
    "hemithorax": ("hemithorax", False),
    "hemithoraces": ("hemithorax", True),
    "lingula": ("lingula", False),
    "lingular": ("lingula", False),
    "retrocardiac": ("retrocardiac", False),
    "perihilar": ("perihilar", False),
    "infrahilar": ("infrahilar", False),
    "hilar": ("hilum", False),
    "hilum": ("hilum", False),
    "hila": ("hilum", True),
    "wall": ("chest wall", False),
    "walls": ("chest wall", True),
}
_PLURAL_MARKERS = frozenset({"angles", "sulci"})
# Most specific first: the region kept when one phrase names several ("left basilar retrocardiac").
_REGION_PRIORITY = (
    "lobe",
    "lingula",
    "zone",
    "costophrenic",
    "retrocardiac",
    "apex",
    "base",
    "perihilar",
    "infrahilar",
    "hilum",
    "chest wall",
    "hemithorax",
    "lung",
)
_REGION_NAMES = {
    "base": ("lung base", "lung bases"),
    "apex": ("apex", "apices"),
    "costophrenic": ("costophrenic angle", "costophrenic angles"),
    "hemithorax": ("hemithorax", "hemithoraces"),
    "retrocardiac": ("retrocardiac region", "retrocardiac regions"),
    "perihilar": ("perihilar region", "perihilar regions"),
    "infrahilar": ("infrahilar region", "infrahilar regions"),
    "hilum": ("hilum", "hila"),
    "chest wall": ("chest wall", "chest walls"),
    "lung": ("lung", "lungs"),
}
_LOCATION_WORDS = (
    frozenset(_SIDE_WORDS)
    | frozenset(_SIDED_REGIONS)
    | frozenset(_VERTICALS)
    | frozenset(_REGION_WORDS)
    | _PLURAL_MARKERS
    | {"angle", "sulcus", "chest", "sided", "lateral", "medial", "posterior", "anterior"}
)
# Words that may stand between a location and its finding ("left lower lobe patchy opacity").
_MODIFIERS = _word_set(
    """
    small tiny trace minimal mild mildly moderate moderately large massive severe severely marked
    markedly extensive slight slightly minor sized size to pulmonary parenchymal airspace air space
    alveolar interstitial focal multifocal patchy diffuse streaky linear plate platelike like
    discoid subsegmental segmental lobar confluent dense hazy faint subtle ill well defined
    circumscribed rounded round solid spiculated lobulated loculated layering dependent new newly
    increased increasing decreased decreasing persistent persisting stable unchanged improved
    improving worsened worsening enlarging developing resolving residual recurrent interval known
    chronic acute subacute old healed healing remote underlying superimposed additional
    associated adjacent scattered multiple several few numerous ground glass reticular
    reticulonodular nodular cystic cavitary calcified noncalcified partially vague apparent
    definite obvious significant substantial peripheral central peribronchial cm mm x
    """
)
_PREPOSITIONS = _word_set(
    "in at within of involving along on over overlying throughout near abutting"
)
_LEADING_VERBS = _word_set(
    """
    is are was were has have had been be seen noted present again also now demonstrated
    identified visualized persists persist remains remain persisting remaining evident
    projecting projects located predominantly predominately mainly mostly measuring measures
    approx approximately about up to cm mm x .
    """
)
_PHRASE_FILLERS = _word_set(
    "the a both of and or portion portions aspect segment segments region regions part level "
    "inferior superior"
)
_CONJUNCTIONS = frozenset({"and", "or"})


@dataclass(frozen=True)
class _Span:
    """A matched phrase or cue inside one clause."""

    start: int
    end: int
    label: str  # canonical finding ("": a look-alike that is no finding) or cue kind
    extra: str  # location words inside a finding phrase, or a cue's direction
    fixed: str | None = None  # status of findings implied by a normal statement


@dataclass(frozen=True)
class _Mention:
    """One finding-sentence to be: where it was first said (sentence, clause, offset)."""

    finding: str
    status: str
    location: str
    order: tuple[int, int, int]


@dataclass
class _Place:
    """Location words of one coordinated part ("right upper", "and lower lobes")."""

    side: str | None = None
    vertical: str | None = None
    regions: tuple[str, ...] = ()
    plural: bool = False


# --------------------------------------------------------------------------------- public API


def extract_findings(report: str) -> list[str]:
    """Turn a free-text chest X-ray report into RadZero finding-sentences.

    Each sentence is "There is / may be / is no {finding}[ of {location}]." with canonical,
    lower-case finding names; duplicates across sections are merged and the order is that of the
    first mention. See the module docstring for the rules.
    """
    if not isinstance(report, str):
        raise TypeError(f"report must be a str, got {type(report).__name__}")
    mentions = []
    for index, sentence in enumerate(_split_sentences(_finding_text(report))):
        mentions.extend(_sentence_mentions(sentence, index))
    return [_render(mention) for mention in _merge(mentions)]


def canonical_finding(name: str) -> str | None:
    """The canonical vocabulary name of a finding, class name or synonym, or None if unknown.

    Case, underscores and plurals do not matter: "Effusion", "Pleural_Thickening", "Lung Opacity"
    and "enlarged heart" map to "pleural effusion", "pleural thickening", "opacity", "cardiomegaly".
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    text = re.sub(r"\s+", " ", name.replace("_", " ")).strip().lower()
    if text in _CLASS_ALIASES:
        return _CLASS_ALIASES[text]
    for canonical, pattern in _COMPILED_PHRASES:
        if pattern.fullmatch(text):
            return canonical
    return None


# ---------------------------------------------------------------------------------- sections


def _section_kind(match: re.Match[str]) -> str | None:
    """Whether a header opens a kept section ("keep"), another known one ("other") or neither."""
    name = match.group("bare") or match.group("upper") or match.group("name")
    name = re.sub(r"\s+", " ", name.lower().replace("&", " and ").replace("/", " and ")).strip()
    if name in _KEPT_SECTIONS:
        return "keep"
    return "other" if name in _OTHER_SECTIONS else None


def _finding_text(report: str) -> str:
    """The FINDINGS and IMPRESSION bodies, or the text outside other known sections."""
    headers = [
        (match, kind) for match in _HEADER.finditer(report) if (kind := _section_kind(match))
    ]
    if not headers:
        return report
    kept, rest = [], [report[: headers[0][0].start()]]
    for position, (match, kind) in enumerate(headers):
        end = headers[position + 1][0].start() if position + 1 < len(headers) else len(report)
        body = report[match.end() : end]
        if kind == "keep":
            kept.append(body)
        else:
            paragraphs = re.split(r"\n[ \t]*\n", body, maxsplit=1)
            rest.append(paragraphs[1] if len(paragraphs) > 1 else "")
    return "\n\n".join(kept if kept else rest)


# ---------------------------------------------------------------------------------- sentences


def _continues(previous: str, line: str) -> bool:
    """Whether ``line`` carries on the sentence of the line before it (a wrapped line)."""
    if not previous or previous[-1] in ".!?;:" or _LIST_MARKER.match(line):
        return False
    if previous[-1] in ",-/" or previous.split()[-1].lower() in _WRAP_WORDS:
        return True
    first = line.split()[0]
    acronym = first.isupper() and len(first) > 1 and not line.isupper()
    return not first[0].isupper() or acronym


def _join_wrapped_lines(text: str) -> str:
    """One line per sentence run: wrapped lines joined, other line breaks kept."""
    pieces, previous = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line:
            pieces.append(" " if _continues(previous, line) else "\n")
            pieces.append(line)
        else:
            pieces.append("\n")
        previous = line
    return "".join(pieces)


def _split_sentences(text: str) -> list[str]:
    """Sentences with list markers removed; decimals and abbreviations do not split."""
    sentences: list[str] = []
    glue = False
    for piece in _BREAK.split(_join_wrapped_lines(text)):
        if glue and sentences:
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
        glue = bool(_ABBREVIATION.search(piece))
    stripped = (_LIST_MARKER.sub("", sentence).strip() for sentence in sentences)
    return [sentence for sentence in stripped if re.search(r"[A-Za-z]", sentence)]


def _normalise(sentence: str) -> str:
    """Lower-case text with shorthand expanded and comparison wording removed.

    Brackets become commas and colons ("Lungs: Clear.") spaces.
    """
    text = sentence.lower().replace("’", "'")
    text = re.sub(r"\bw/o\b", "without", text)
    text = re.sub(r"\bs/p\b", "status post", text)
    text = re.sub(r"\bb/l\b", "bilateral", text)
    text = re.sub(r"\br/o\b", "rule out", text)
    text = re.sub(r"\bw/", "with ", text)
    text = re.sub(r"\s*/\s*", " or ", text)
    text = re.sub(r"[()\[\]{}]", ",", text).replace(":", " ")
    text = _TEMPORAL.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    return re.sub(r"(?:,\s*){2,}", ", ", text).strip(" .,;:!?")


def _clauses(sentence: str) -> list[str]:
    return [part.strip(" ,") for part in _CLAUSE_BREAK.split(sentence) if part.strip(" ,")]


# ----------------------------------------------------------------------------------- mentions


def _without_overlaps(ranked: list[_Span]) -> list[_Span]:
    """The spans, best first, that overlap no better one; in text order."""
    taken = bytearray(max((span.end for span in ranked), default=0))
    chosen = []
    for span in ranked:
        if not any(taken[span.start : span.end]):
            taken[span.start : span.end] = b"\x01" * (span.end - span.start)
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def _finding_spans(clause: str) -> list[_Span]:
    """Vocabulary phrases (longest wins) and findings implied by normal statements."""
    spans = [_Span(m.start(), m.end(), "", "") for m in _NOT_FINDINGS.finditer(clause)]
    for name, pattern in _COMPILED_PHRASES:
        for match in pattern.finditer(clause):
            spans.append(
                _Span(match.start(), match.end(), name, match.groupdict().get("where", ""))
            )
    spans = _without_overlaps(sorted(spans, key=lambda s: (s.start - s.end, s.start)))
    for pattern, names in _IMPLIED_ABSENT:
        match = pattern.search(clause)
        if match:
            spans.extend(_Span(match.start(), match.start(), name, "", _ABSENT) for name in names)
    return sorted(spans, key=lambda s: s.start)


def _cue_spans(clause: str, findings: list[_Span]) -> list[_Span]:
    """Negation and hedge cues; a hedge right after a negation (no finding between) is dropped."""
    ranked = []
    for rank, (pattern, kind, direction) in enumerate(_CUES):
        for match in pattern.finditer(clause):
            ranked.append(
                (match.start() - match.end(), rank, _Span(*match.span(), kind, direction))
            )
    ranked.sort(key=lambda item: (item[0], item[1], item[2].start))
    kept: list[_Span] = []
    for cue in _without_overlaps([span for _, _, span in ranked]):
        previous = kept[-1] if kept else None
        if (
            previous is not None
            and cue.label == _UNCERTAIN
            and cue.extra == _FORWARD
            and previous.label == _ABSENT
            and previous.extra == _FORWARD
            and not any(previous.end <= f.start < cue.start for f in findings if f.label)
        ):
            continue
        kept.append(cue)
    return kept


def _backward_cue(finding: _Span, findings: list[_Span], cues: list[_Span]) -> _Span | None:
    """The nearest cue after a finding that reaches back to it, if any.

    A forward cue in between blocks it, and "X versus Y" reaches back to X only.
    """
    for cue in cues:
        if cue.start < finding.end:
            continue
        if cue.extra == _FORWARD:
            return None
        if cue.extra == _BOTH and any(
            finding.end <= f.start < cue.start for f in findings if f.label
        ):
            return None
        return cue
    return None


def _reaches_back(between: str) -> bool:
    """Whether a cue after ``between`` covers the finding before it.

    Across a comma or "with" only a list ending in "and"/"or" does ("A, B or C cannot be
    excluded"), not a new phrase ("effusion with atelectasis, consolidation not excluded").
    """
    parts = re.split(r",|\bwith\b", between)
    return len(parts) == 1 or re.search(r"\b(?:and|or)\b", parts[-1]) is not None


def _status(finding: _Span, findings: list[_Span], cues: list[_Span], clause: str) -> str:
    """Present, uncertain or absent from the cues around a finding in its clause."""
    if finding.fixed:
        return finding.fixed
    inside = [c for c in cues if finding.start <= c.start and c.end <= finding.end]
    if inside:
        return inside[-1].label
    after = _backward_cue(finding, findings, cues)
    if after and _reaches_back(clause[finding.end : after.start]):
        return after.label
    before = [c for c in cues if c.end <= finding.start and c.extra != _BACKWARD]
    return before[-1].label if before else _PRESENT


def _sentence_mentions(sentence: str, index: int) -> list[_Mention]:
    mentions = []
    for number, clause in enumerate(_clauses(_normalise(sentence))):
        findings = _finding_spans(clause)
        cues = _cue_spans(clause, findings)
        tokens = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(clause)]
        for position, finding in enumerate(findings):
            if not finding.label:
                continue
            status = _status(finding, findings, cues, clause)
            locations = [""]
            if finding.label not in _NEVER_LOCATED and not finding.fixed:
                words = _location_words(finding, position, findings, cues, tokens)
                locations = _locations(words, finding.label) or [""]
            for location in locations:
                order = (index, number, finding.start)
                mentions.append(_Mention(finding.label, status, location, order))
    return mentions


# ---------------------------------------------------------------------------------- locations


def _location_words(
    finding: _Span,
    position: int,
    findings: list[_Span],
    cues: list[_Span],
    tokens: list[tuple[str, int, int]],
) -> list[str]:
    """Location words before the finding, inside its phrase and in a phrase right after it."""
    limit = max(
        [s.end for s in findings[:position]] + [c.end for c in cues if c.end <= finding.start] + [0]
    )
    following = [s.start for s in findings[position + 1 :] if s.start >= finding.end]
    stop = min(
        following
        + [c.start for c in cues if c.start >= finding.end]
        + [tokens[-1][2] if tokens else 0]
    )
    before = [t[0] for t in tokens if limit <= t[1] and t[2] <= finding.start]
    after = [t[0] for t in tokens if finding.end <= t[1] and t[2] <= stop]
    inner = [m.group() for m in _TOKEN.finditer(finding.extra)]
    phrase = _prepositional_phrase(after)
    conjunctions = [i for i, word in enumerate(phrase) if word in _CONJUNCTIONS]
    if conjunctions and after[len(after) - len(phrase) :] == phrase and stop in following:
        phrase = phrase[: conjunctions[-1]]  # "... and left lower lobe atelectasis"
    return _premodifiers(before) + inner + phrase


def _premodifiers(words: list[str]) -> list[str]:
    """The run of location and descriptive words directly before a finding.

    A run coordinated with "and"/"or" that follows a preposition ("opacity in the right lower
    lobe and left lower lobe atelectasis") keeps only its last part: the rest belongs to the
    phrase before.
    """
    run: list[str] = []
    position = len(words) - 1
    while position >= 0:
        word = words[position]
        if word in _CONJUNCTIONS:
            if not position or words[position - 1] not in _LOCATION_WORDS:
                break
        elif not (
            word in _LOCATION_WORDS or word in _MODIFIERS or word == "-" or word[0].isdigit()
        ):
            break
        run.insert(0, word)
        position -= 1
    stop = words[position] if position >= 0 else ""
    if stop in ("the", "a", "an") and position > 0:
        stop = words[position - 1]
    conjunctions = [i for i, word in enumerate(run) if word in _CONJUNCTIONS]
    if stop in _PREPOSITIONS and conjunctions:
        return run[conjunctions[-1] + 1 :]
    return run


def _prepositional_phrase(words: list[str]) -> list[str]:
    """Location words of "(is seen) in the right upper lobe and lingula" after a finding."""
    position = 0
    while position < min(len(words), 8) and (
        words[position] in _LEADING_VERBS or words[position][0].isdigit()
    ):
        position += 1
    if position >= len(words):
        return []
    if words[position] == "bilaterally":
        return ["bilaterally"]
    if words[position] not in _PREPOSITIONS:
        return []
    phrase = []
    for word in words[position + 1 :]:
        if not (word in _LOCATION_WORDS or word in _PHRASE_FILLERS or word == "-"):
            break
        phrase.append(word)
    return phrase


def _places(words: list[str]) -> list[_Place]:
    """Split location words at "and"/"or" and read side, level and regions of each part."""
    places, current = [], _Place()
    for position, word in enumerate(words):
        if word in _CONJUNCTIONS:
            places.append(current)
            current = _Place()
        elif word in _SIDE_WORDS:
            current.side = _SIDE_WORDS[word]
        elif word in _SIDED_REGIONS:
            current.side = "bilateral"
            current.regions += (_SIDED_REGIONS[word],)
        elif word in _VERTICALS:
            current.vertical = _VERTICALS[word]
        elif word in _REGION_WORDS:
            region, plural = _REGION_WORDS[word]
            following = words[position + 1] if position + 1 < len(words) else ""
            if region == "costophrenic" and following in _PLURAL_MARKERS:
                plural = True
            current.regions += (region,)
            current.plural = current.plural or plural
    places.append(current)
    return [p for p in places if p.side or p.vertical or p.regions]


def _share_words(places: list[_Place]) -> None:
    """Let coordinated parts borrow the region after them and the side before them.

    "right upper and lower lobes" -> "right upper lobe", "right lower lobe".
    """
    for position in range(len(places) - 2, -1, -1):
        place, following = places[position], places[position + 1]
        if not place.regions and following.regions:
            place.regions, place.plural = following.regions, following.plural
            place.vertical = place.vertical or following.vertical
    for previous, place in itertools.pairwise(places):
        place.side = place.side or previous.side


def _default_region(finding: str) -> str:
    """Region of a finding whose report names only a side ("left pleural effusion")."""
    if finding in _PLEURAL_OR_WALL:
        return "hemithorax"
    return "hilum" if finding in _HILAR else "lung"


def _location_name(place: _Place, finding: str) -> str:
    """Normalised noun phrase of one place, e.g. "right upper lobe", "bilateral lung bases"."""
    region = next((r for r in _REGION_PRIORITY if r in place.regions), None)
    if region in ("lung", None) and place.vertical:
        region = "zone"
    if region in ("lobe", "zone") and not place.vertical:
        region = None
    if region == "lingula":
        return "lingula"
    side = place.side or ("bilateral" if place.plural else None)
    if region is None:
        if side is None:
            return ""
        region = _default_region(finding)
    if region in ("lobe", "zone"):
        level = "middle" if region == "lobe" and place.vertical == "mid" else place.vertical
        names = (f"{level} {region}", f"{level} {region}s")
    else:
        names = _REGION_NAMES[region]
    if side == "bilateral":
        return f"bilateral {names[1]}"
    return f"{side} {names[0]}" if side else names[0]


def _locations(words: list[str], finding: str) -> list[str]:
    places = _places(words)
    _share_words(places)
    names = (_location_name(place, finding) for place in places)
    return list(dict.fromkeys(name for name in names if name))


# ------------------------------------------------------------------------------------- output


def _merge(mentions: list[_Mention]) -> list[_Mention]:
    """Merge duplicates and conflicting statuses (rules in the module docstring)."""
    first: dict[tuple[str, str, str], _Mention] = {}
    for mention in mentions:
        first.setdefault((mention.finding, mention.status, mention.location), mention)
    order = {key: (mention.order, rank) for rank, (key, mention) in enumerate(first.items())}
    kept = set(first)

    def drop(loser: tuple[str, str, str], winner: tuple[str, str, str]) -> None:
        kept.discard(loser)
        order[winner] = min(order[winner], order[loser])

    keys = list(first)
    for key in keys:
        finding, status, location = key
        rivals = [k for k in keys if k in kept and k != key and k[0] == finding]
        if not location:
            located = [k for k in rivals if k[2] and _RANK[k[1]] >= _RANK[status]]
            positive = [k for k in rivals if status == _ABSENT and k[1] != _ABSENT]
            if located or positive:
                drop(key, (located or positive)[0])
                continue
        stronger = [k for k in rivals if k[2] == location and _RANK[k[1]] > _RANK[status]]
        if stronger:
            drop(key, stronger[0])
    return [first[key] for key in sorted(kept, key=order.__getitem__)]


def _render(mention: _Mention) -> str:
    where = f" of {mention.location}" if mention.location else ""
    return _TEMPLATES[mention.status].format(mention.finding) + where + "."
