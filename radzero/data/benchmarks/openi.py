"""Open-I (Indiana University chest X-rays): one XML report per study, MeSH terms as labels."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from radzero import storage
from radzero.data.benchmarks._base import Benchmark, file_name, one_hot

_READERS = 16
_REDACTED = re.compile(r"X{4,}")


class OpenI(Benchmark):
    """Open-I: reports ``ecgen-radiology/*.xml`` (NLMCXR_reports.tgz), images
    ``NLMCXR_png/<parentImage id>.png`` (NLMCXR_png.tgz); one row per image of each report.

    Classes come from the report's MeSH ``major`` terms: the heading before the first "/" of
    each term ("Cardiomegaly/borderline" -> Cardiomegaly), matched case-insensitively. The
    classes are the headings that name a finding or a device (listed in ``pathologies``);
    anatomy-only headings (Lung, Aorta, Spine, Thoracic Vertebrae, Diaphragm, ...) and
    "Technical Quality of Image Unsatisfactory" name none and are not classes. "normal" means
    no finding (0 for every class); a report without major terms or only "No Indexing" is
    unknown (NaN). ``mesh`` keeps the raw major terms. ``report`` is FINDINGS and IMPRESSION
    with each "XXXX" redaction written as "___" (MIMIC-CXR's marker). No split: all "test".
    """

    name = "openi"
    pathologies = (
        "Airspace Disease",
        "Aortic Aneurysm",
        "Arthritis",
        "Atherosclerosis",
        "Azygos Lobe",
        "Blister",
        "Bone Diseases, Metabolic",
        "Breast Implants",
        "Bronchiectasis",
        "Bullous Emphysema",
        "Calcified Granuloma",
        "Calcinosis",
        "Cardiomegaly",
        "Catheters, Indwelling",
        "Cavitation",
        "Cicatrix",
        "Consolidation",
        "Cystic Fibrosis",
        "Cysts",
        "Deformity",
        "Density",
        "Diaphragmatic Eventration",
        "Dislocations",
        "Emphysema",
        "Epicardial Fat",
        "Foreign Bodies",
        "Fractures, Bone",
        "Funnel Chest",
        "Granuloma",
        "Granulomatous Disease",
        "Heart Failure",
        "Hernia, Hiatal",
        "Hydropneumothorax",
        "Hyperdistention",
        "Hyperostosis, Diffuse Idiopathic Skeletal",
        "Hypertension, Pulmonary",
        "Implanted Medical Device",
        "Infiltrate",
        "Kyphosis",
        "Lucency",
        "Lung Diseases, Interstitial",
        "Lung, Hyperlucent",
        "Markings",
        "Mass",
        "Mastectomy",
        "Medical Device",
        "Nodule",
        "Opacity",
        "Osteophyte",
        "Pericardial Effusion",
        "Pleural Effusion",
        "Pneumonectomy",
        "Pneumonia",
        "Pneumoperitoneum",
        "Pneumothorax",
        "Pulmonary Atelectasis",
        "Pulmonary Congestion",
        "Pulmonary Disease, Chronic Obstructive",
        "Pulmonary Edema",
        "Pulmonary Emphysema",
        "Pulmonary Fibrosis",
        "Sarcoidosis",
        "Sclerosis",
        "Scoliosis",
        "Shift",
        "Spinal Fusion",
        "Spondylosis",
        "Stents",
        "Subcutaneous Emphysema",
        "Surgical Instruments",
        "Sutures",
        "Thickening",
        "Tube, Inserted",
        "Tuberculosis",
        "Volume Loss",
    )
    reports = "ecgen-radiology"
    images = "NLMCXR_png"

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        uris = storage.list_files(storage.join(self.root, self.reports), ".xml")
        if not uris:
            raise FileNotFoundError(f"{self.root}: no {self.reports}/*.xml reports found")
        with ThreadPoolExecutor(_READERS) as pool:
            reports = list(pool.map(_parse_report, uris))
        lookup = {p.lower(): p for p in self.pathologies}
        rows, findings = [], []
        for report in reports:
            headings = [term.split("/", 1)[0].strip() for term in report["major"]]
            known = [h for h in headings if h.lower() != "no indexing"]
            classes = [lookup[h.lower()] for h in known if h.lower() in lookup] if known else None
            text = "\n\n".join(
                f"{label}: {_REDACTED.sub('___', report[label.lower()])}"
                for label in ("FINDINGS", "IMPRESSION")
                if report[label.lower()]
            )
            for image_id in report["images"]:
                rows.append(
                    {
                        "image": storage.join(self.root, self.images, f"{image_id}.png"),
                        "split": "test",
                        "boxes": [],
                        "report_id": report["report_id"],
                        "report": text,
                        "mesh": report["major"],
                    }
                )
                findings.append(classes)
        frame = pd.DataFrame(
            rows, columns=["image", "split", "boxes", "report_id", "report", "mesh"]
        )
        return pd.DataFrame(reports), frame, one_hot(findings, self.pathologies, frame.index)


def _parse_report(uri: str) -> dict:
    """The parts of one report XML that the reader uses, as read."""
    try:
        root = ET.fromstring(storage.read_bytes(uri))
    except ET.ParseError as err:
        raise ValueError(f"{uri} cannot be parsed as XML: {err}") from err
    uid = root.find("uId")
    name = file_name(uri)
    sections = {
        (node.get("Label") or "").lower(): _text(node) for node in root.iter("AbstractText")
    }
    return {
        "report_id": uid.get("id", "") if uid is not None else name.rsplit(".", 1)[0],
        "file": name,
        **{k: sections.get(k, "") for k in ("comparison", "indication", "findings", "impression")},
        "major": [t for t in (_text(n) for n in root.findall(".//MeSH/major")) if t],
        "automatic": [t for t in (_text(n) for n in root.findall(".//MeSH/automatic")) if t],
        "images": [n.get("id") for n in root.iter("parentImage") if n.get("id")],
    }


def _text(node: ET.Element) -> str:
    return " ".join("".join(node.itertext()).split())
