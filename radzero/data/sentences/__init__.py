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
    subject after "and"/a comma ("and the ...", ", there is ...", but not "if there is") and
    similar words.

Findings
    Each vocabulary phrase maps to one canonical name (``FINDINGS_VOCABULARY``); overlapping
    phrases resolve to the longest ("granulomatous infection" is a granuloma, "subcutaneous
    emphysema" is not emphysema). A bare "lesion" counts as a mass, "lung lesion" as the CheXpert
    "lung lesion". Look-alikes stay apart: infection, aspiration and pneumonitis are findings of
    their own, not pneumonia; blunting of a costophrenic angle is "blunting", not a pleural
    effusion; a nodular opacity is a nodule only when discrete (a size up to 3 cm, or "small",
    "rounded", "solid", "well-circumscribed", ...), otherwise an opacity; a fractured wire, lead
    or screw is no fracture. Curvatures of the spine ("dextroscoliosis", "levocurvature of the
    thoracolumbar spine") are scoliosis, a kyphotic one is not.
    Normal statements imply absent findings: a normal heart, cardiac silhouette or
    cardiomediastinal silhouette -> no cardiomegaly (the last also no enlarged
    cardiomediastinum), normal mediastinal contours -> no enlarged cardiomediastinum, normal hila
    -> no hilar enlargement, sharp costophrenic angles -> no pleural effusion, clear lungs -> no
    consolidation, intact or normal bones -> no fracture, normal pulmonary vascularity -> no
    vascular congestion, "extubated" -> no endotracheal tube.

Negation, uncertainty and hypothetical statements
    Cues are negating ("no", "without", "free of", "not seen", "has resolved", "removed", ...),
    hedging ("may", "possible", "likely", "cannot be excluded", "suspicious for", "versus", ...) or
    hypothetical: a condition, request, history or limit of the study that says nothing about this
    image ("if there is concern for fracture", "correlate clinically for pneumonia", "rule out",
    "history of", "evaluation for pneumothorax is limited", "fractures may not be demonstrated",
    "could obscure a nodule"). A hypothetical cue that reaches a finding decides before any other
    and the finding gives no sentence. Cues act forwards ("no X, Y or Z"), backwards ("X and Y
    cannot be excluded") or both ("X versus Y"), never beyond their clause. A cue inside a phrase
    ("the heart may be enlarged", "the heart is not enlarged") decides it. Otherwise the nearest
    following cue decides if it acts backwards and reaches the finding: not past a forward cue, past
    a comma or "with" only within a list ("A, B, or C cannot be excluded"), and for "versus" only
    from the finding right before it. Then the nearest preceding forward cue decides; otherwise the
    finding is present. A hedge right after a negation with no finding in between ("no findings
    suggestive of pneumonia") does not undo the negation.
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

Modules (a report passes through them from sections.py to extract.py)
    ``vocabulary.yaml``  every phrase and word list above (findings, cues, sections, location
                         words), editable without touching code; ``vocabulary.py`` reads and
                         checks it once at import (``VocabularyError`` on a malformed file)
    ``sections.py``      the part of the report that is read
    ``split.py``         sentences, normalisation and clauses
    ``findings.py``      finding phrases and normal statements in a clause
    ``cues.py``          negation and hedge cues and the status they give
    ``locations.py``     location words and their normalised names
    ``extract.py``       ``extract_findings``: the pipeline, merging and the templates
"""

from radzero.data.sentences.extract import extract_findings
from radzero.data.sentences.findings import canonical_finding
from radzero.data.sentences.vocabulary import (
    DEVICE_VOCABULARY,
    FINDINGS_VOCABULARY,
    VocabularyError,
    load_vocabulary,
)

__all__ = [
    "DEVICE_VOCABULARY",
    "FINDINGS_VOCABULARY",
    "VocabularyError",
    "canonical_finding",
    "extract_findings",
    "load_vocabulary",
]
