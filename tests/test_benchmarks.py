"""Benchmark readers against tiny files written in each dataset's published format."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radzero import storage
from radzero.data import benchmarks, phantom
from radzero.data.benchmarks import decode_rle

# --------------------------------------------------------------------------------- generators


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


NIH_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
)


BBOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"


def make_nih(root: Path, entry: str = "Data_Entry_2017.csv") -> None:
    """Data_Entry (bracketed header, trailing comma), BBox_List (+ empty columns), test list."""
    write(
        root / entry,
        NIH_ENTRY_HEADER
        + "00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143\n"
        + "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143\n"
        + "00000002_000.png,No Finding,0,2,81,M,AP,2500,2048,0.171,0.171\n"
        + "00000003_000.png,Infiltration|Atelectasis,0,3,76,F,PA,2048,2500,0.168,0.168\n",
    )
    write(
        root / "BBox_List_2017.csv",
        BBOX_HEADER + "00000003_000.png,Infiltrate,225.084745762712,547.019216763771,"
        "86.7796610169491,79.1864406779661,,,\n"
        "00000003_000.png,Atelectasis,1000.2,10.6,50,20,,,\n"
        "00000001_000.png,Cardiomegaly,300,400,200.5,100,,,\n",
    )
    write(root / "test_list.txt", "00000001_001.png\n00000003_000.png\n")


CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
    "Pleural Effusion,Pleural Other,Fracture,Support Devices\n"
)


def make_chexpert(root: Path) -> None:
    """valid.csv in CheXpert-v1.0-small/ (paths carry that folder), test.csv at the root."""
    write(
        root / "CheXpert-v1.0-small" / "valid.csv",
        CHEXPERT_HEADER
        + "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg,Male,73,Frontal,AP,"
        + "1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n"
        + "CheXpert-v1.0-small/valid/patient64542/study1/view2_lateral.jpg,Male,70,Lateral,,"
        + "0.0,0.0,1.0,1.0,0.0,-1.0,,0.0,1.0,0.0,0.0,0.0,0.0,1.0\n",
    )
    write(
        root / "test.csv",
        "Path,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,"
        "Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,"
        "Pleural Other,Fracture,Support Devices\n"
        "test/patient64741/study1/view1_frontal.jpg,0,0,1,0,0,1,0,0,0,0,1,0,0,1\n",
    )


PADCHEST_FILE = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"


def padchest_csv() -> str:
    rows = [
        ("a.png", "0", "['pleural effusion', ' cardiomegaly ']", "Physician"),
        ("b.png", "1", "['normal']", "Physician"),
        ("c.png", "1", "", "RNN_model"),
        ("d.png", "12", "['COPD signs', 'zebra stripes', '']", "RNN_model"),
    ]
    table = pd.DataFrame(
        {
            "ImageID": [r[0] for r in rows],
            "ImageDir": [r[1] for r in rows],
            "StudyID": ["s1", "s2", "s2", "s3"],
            "PatientID": ["p1", "p2", "p2", "p3"],
            "Projection": ["PA", "L", "PA", "AP_horizontal"],
            "MethodLabel": [r[3] for r in rows],
            "Report": ["cardiomegali", "normal", "", "epoc"],
            "Labels": [r[2] for r in rows],
            "Localizations": ["['loc left']", "[]", "", "[]"],
        }
    )
    return table.to_csv(index=True)  # the published file opens with an unnamed index column


def make_padchest(root: Path, gzipped: bool = False) -> None:
    if gzipped:
        write(root / f"{PADCHEST_FILE}.gz", gzip.compress(padchest_csv().encode()))
    else:
        write(root / PADCHEST_FILE, padchest_csv())


def openi_xml(uid: str, major: list[str], images: list[str], findings: str) -> str:
    terms = "".join(f"<major>{t}</major>" for t in major)
    parents = "".join(
        f'<parentImage id="{i}"><figureId>F{n}</figureId><caption>Xray Chest PA and Lateral'
        f'</caption><panel type="single"><url>/hadoop/storage/radiology/extract/{i}.jpg</url>'
        "</panel></parentImage>"
        for n, i in enumerate(images, start=1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<eCitation>\n<meta type="rr"/>\n'
        f'<uId id="{uid}"/>\n<pmcId id="{uid[3:]}"/>\n<docSource>CXR</docSource>\n'
        '<MedlineCitation Owner="Indiana University" Status="supplied by publisher">'
        '<Article PubModel="Electronic"><ArticleTitle>Indiana University Chest X-ray Collection'
        "</ArticleTitle><Abstract>"
        '<AbstractText Label="COMPARISON">None.</AbstractText>'
        '<AbstractText Label="INDICATION">XXXX-year-old male, chest pain.</AbstractText>'
        f'<AbstractText Label="FINDINGS">{findings}</AbstractText>'
        '<AbstractText Label="IMPRESSION">Normal chest x-XXXX.</AbstractText>'
        "</Abstract></Article></MedlineCitation>\n"
        f"<MeSH>{terms}<automatic>heart</automatic></MeSH>\n{parents}\n</eCitation>\n"
    )


def make_openi(root: Path) -> None:
    reports = root / "ecgen-radiology"
    write(
        reports / "1.xml",
        openi_xml(
            "CXR1",
            ["Cardiomegaly/borderline", "Pulmonary Artery/enlarged", "Opacity/lung/base/left"],
            ["CXR1_1_IM-0001-3001", "CXR1_1_IM-0001-4001"],
            "Borderline cardiomegaly. No XXXX effusion.",
        ),
    )
    write(reports / "2.xml", openi_xml("CXR2", ["normal"], ["CXR2_IM-0652-1001"], "Clear."))
    write(reports / "3.xml", openi_xml("CXR3", ["No Indexing"], ["CXR3_IM-1384-1001"], "x"))
    write(reports / "4.xml", openi_xml("CXR4", ["normal"], [], "No images."))
    write(
        reports / "5.xml",
        openi_xml("CXR5", ["Lung/hypoinflation/mild"], ["CXR5_IM-2000-1001"], "Low volumes."),
    )


def make_chestxdet10(root: Path) -> None:
    train = [
        {
            "file_name": "36199.png",
            "syms": ["Fibrosis", "Fibrosis", "Nodule"],
            "boxes": [[632, 721, 909, 969], [129, 611, 474, 909], [10, 20, 30, 40]],
        },
        {"file_name": "36200.png", "syms": [], "boxes": []},
    ]
    test = [{"file_name": "50000.png", "syms": ["Effusion"], "boxes": [[0, 500, 300, 1023]]}]
    write(root / "train.json", json.dumps(train))
    write(root / "test.json", json.dumps(test))


MSCXR_HEADER = "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height,split\n"
MSCXR_PATH = "files/p10/p10233088/s54276838/675d792f-a3521e48-5eec8573-1e81d644-e60c34f8.jpg"


def make_mscxr(root: Path, version: str = "v1.1.0") -> None:
    rows = [
        f"675d792f,Pneumonia,Right lower lobe pneumonia,{MSCXR_PATH},10,20,30,40,2544,3056,test",
        f"675d792f,Pneumonia,Right lower lobe pneumonia,{MSCXR_PATH},100,200,50,60,2544,3056,test",
        f'675d792f,Pleural Effusion,"small, left effusion",{MSCXR_PATH},2500,3000,100,100,'
        "2544,3056,test",
        "0a1b2c3d,Cardiomegaly,Cardiomegaly,files/p11/p11000001/s50000001/0a1b2c3d.jpg,"
        "500,600,1000,700,3056,2544,val",
    ]
    header = MSCXR_HEADER
    if version == "v1.0.0":  # the first release has no split column
        header = header.replace(",split", "")
        rows = [r.rsplit(",", 1)[0] for r in rows]
    write(root / f"MS_CXR_Local_Alignment_{version}.csv", header + "\n".join(rows) + "\n")


def encode_rle(mask: np.ndarray) -> str:
    """SIIM's relative RLE of a boolean (height, width) mask, written independently of decode."""
    flat = mask.T.reshape(-1).astype(int)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
    starts, ends = edges[0::2], edges[1::2]
    values, previous = [], 0
    for start, end in zip(starts, ends, strict=True):
        values += [int(start - previous), int(end - start)]
        previous = int(end)
    return " ".join(map(str, values)) if values else "-1"


SIIM_IMAGE = "1.2.276.0.7230010.3.1.4.8323329.14508.1517875252.443873"


def make_siim(root: Path, name: str = "train-rle.csv") -> None:
    header = "ImageId, EncodedPixels\n" if name == "train-rle.csv" else "ImageId,EncodedPixels\n"
    write(
        root / name,
        header + f"{SIIM_IMAGE}, 5 3 1024 2\n"
        f"{SIIM_IMAGE}, 1000000 4\n"
        "1.2.276.0.7230010.3.1.4.8323329.1034.1517875166.8504, -1\n",
    )
    nested = root / "dicom-images-train" / "1.2.276.0.7230010.3.1.2" / "1.2.276.0.7230010.3.1.3"
    write(nested / f"{SIIM_IMAGE}.dcm", b"DICM")


def make_rsna(root: Path) -> None:
    write(
        root / "stage_2_train_labels.csv",
        "patientId,x,y,width,height,Target\n"
        "0004cfab-14fd-4e49-80ba-63a80b6bddd6,,,,,0\n"
        "00436515-870c-4b36-a041-de91049b9ab4,264.0,152.0,213.0,379.0,1\n"
        "00436515-870c-4b36-a041-de91049b9ab4,562.0,152.0,256.0,453.0,1\n"
        "00704310-78a8-4b38-8475-49f4573b2dbb,323.0,577.0,160.0,104.0,1\n",
    )


def make_phantom(root: Path) -> None:
    """A tiny phantom set as the generator writes it."""
    phantom.write_dataset(root, 6, size=64, seed=1, prevalence=0.5)


MAKERS = {
    "chexpert": make_chexpert,
    "chestxray14": make_nih,
    "padchest": make_padchest,
    "openi": make_openi,
    "chestxdet10": make_chestxdet10,
    "mscxr": make_mscxr,
    "siim": make_siim,
    "rsna": make_rsna,
    "phantom": make_phantom,
}


def box(finding: str, x1: int, y1: int, x2: int, y2: int) -> dict:
    return {"finding": finding, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def row(frame: pd.DataFrame, column: str, value: str) -> pd.Series:
    (index,) = np.flatnonzero(frame[column].astype(str).str.endswith(value))
    return frame.iloc[index]


# ------------------------------------------------------------------------------------- common


def test_names_and_unknown_name(tmp_path) -> None:
    assert benchmarks.NAMES == (
        "chexpert",
        "chestxray14",
        "padchest",
        "openi",
        "chestxdet10",
        "mscxr",
        "siim",
        "rsna",
    )
    assert list(benchmarks.READERS) == [*benchmarks.NAMES, "phantom"]
    with pytest.raises(ValueError, match=r"'mimic'.*chexpert, chestxray14, .*siim, rsna, phantom$"):
        benchmarks.read("mimic", tmp_path)


@pytest.mark.parametrize("name", list(MAKERS))
def test_every_reader_gives_the_common_manifest(tmp_path, name) -> None:
    MAKERS[name](tmp_path)
    reader = benchmarks.READERS[name](tmp_path)
    frame = benchmarks.read(name, tmp_path)
    pathologies = list(reader.pathologies)
    assert reader.name == name and len(set(pathologies)) == len(pathologies)
    assert list(frame.columns[: len(pathologies) + 3]) == ["image", "split", *pathologies, "boxes"]
    assert frame.equals(reader.frame) and len(frame) > 0 and not reader.csv.empty
    assert list(reader.labels.columns) == pathologies and reader.labels.index.equals(frame.index)
    assert (reader.labels.dtypes == np.float64).all()
    assert set(np.unique(reader.labels.to_numpy()[~reader.labels.isna().to_numpy()])) <= {0, 1}
    assert set(frame["split"]) <= {"train", "val", "test"}
    assert all(Path(p).is_absolute() and p.startswith(str(tmp_path)) for p in frame["image"])
    assert frame["image"].is_unique
    for boxes in frame["boxes"]:
        for b in boxes:
            assert b["finding"] in pathologies and b["x1"] <= b["x2"] and b["y1"] <= b["y2"]
            assert all(isinstance(b[k], int) for k in ("x1", "y1", "x2", "y2"))


@pytest.mark.parametrize("name", list(MAKERS))
def test_missing_files_name_the_root_and_the_files(tmp_path, name) -> None:
    (tmp_path / "unrelated.csv").write_text("a,b\n1,2\n")
    with pytest.raises(FileNotFoundError) as err:
        benchmarks.read(name, tmp_path)
    assert str(tmp_path) in str(err.value)
    expected = {
        "chexpert": ["valid.csv", "test.csv", "CheXpert-v1.0-small/valid.csv"],
        "chestxray14": ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"],
        "padchest": [PADCHEST_FILE, f"{PADCHEST_FILE}.gz"],
        "openi": ["ecgen-radiology"],
        "chestxdet10": ["train.json", "test.json"],
        "mscxr": ["MS_CXR_Local_Alignment_v1.1.0.csv", "MS_CXR_Local_Alignment_v1.0.0.csv"],
        "siim": ["train-rle.csv", "stage_2_train.csv"],
        "rsna": ["stage_2_train_labels.csv"],
        "phantom": ["manifest.csv"],
    }[name]
    assert all(n in str(err.value) for n in expected)


# --------------------------------------------------------------------------------- ChestX-ray14


@pytest.mark.parametrize("entry", ["Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv"])
def test_chestxray14(tmp_path, entry) -> None:
    make_nih(tmp_path, entry)
    reader = benchmarks.ChestXray14(tmp_path)
    frame = reader.frame
    # The bracketed headers cover two data columns each; nothing shifts.
    assert list(reader.csv["OriginalImage[Width]"]) == ["2682", "2894", "2500", "2048"]
    assert list(reader.csv["OriginalImagePixelSpacing[y]"])[2] == "0.171"
    assert list(reader.bbox_csv.columns) == [
        "Image Index",
        "Finding Label",
        "Bbox[x]",
        "Bbox[y]",
        "Bbox[w]",
        "Bbox[h]",
    ]
    assert len(frame) == 4
    assert list(frame["image"]) == [
        str(tmp_path / "images" / n)
        for n in ("00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png")
    ]
    assert list(frame["split"]) == ["train", "test", "train", "test"]
    assert frame["Cardiomegaly"].tolist() == [1, 1, 0, 0]
    assert frame["Emphysema"].tolist() == [0, 1, 0, 0]
    assert frame.iloc[2][list(reader.pathologies)].sum() == 0  # No Finding
    assert frame.iloc[3][["Infiltration", "Atelectasis"]].tolist() == [1, 1]
    assert frame["original_width"].tolist() == [2682, 2894, 2500, 2048]
    assert frame["original_height"].tolist() == [2749, 2729, 2048, 2500]
    assert (frame["height"] == 1024).all() and (frame["width"] == 1024).all()
    assert frame["patient_id"].tolist() == ["1", "1", "2", "3"]
    assert frame["view"].tolist() == ["PA", "PA", "AP", "PA"]
    # x, y, w, h -> inclusive; "Infiltrate" is named like its label; boxes clip at 1023.
    assert frame.iloc[3]["boxes"] == [
        box("Infiltration", 225, 547, 311, 625),
        box("Atelectasis", 1000, 11, 1023, 30),
    ]
    assert frame.iloc[0]["boxes"] == [box("Cardiomegaly", 300, 400, 500, 499)]
    assert frame.iloc[1]["boxes"] == [] and frame.iloc[2]["boxes"] == []


def test_chestxray14_without_box_or_split_files(tmp_path) -> None:
    make_nih(tmp_path)
    (tmp_path / "BBox_List_2017.csv").unlink()
    (tmp_path / "test_list.txt").unlink()
    frame = benchmarks.read("chestxray14", tmp_path)
    assert set(frame["split"]) == {"test"} and all(b == [] for b in frame["boxes"])


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("Data_Entry_2017.csv", NIH_ENTRY_HEADER + "x.png,Zebra,0,1,1,M,PA,1,1,1,1\n", "Zebra"),
        ("Data_Entry_2017.csv", NIH_ENTRY_HEADER + "x.png,,0,1,1,M,PA,1,1,1,1\n", "empty"),
        ("Data_Entry_2017.csv", NIH_ENTRY_HEADER + "x.png,Mass,0,1,1,M,PA,wide,1,1,1\n", "wide"),
        ("Data_Entry_2017.csv", "Image Index,OriginalImage[Width\nx.png,1\n", "bracket"),
        ("BBox_List_2017.csv", BBOX_HEADER + "nope.png,Mass,1,1,1,1\n", "nope"),
        ("BBox_List_2017.csv", BBOX_HEADER + "00000002_000.png,Mass,1,1\n", "lacks"),
        ("BBox_List_2017.csv", BBOX_HEADER + "00000002_000.png,Mass,1,1,1,1,,,9\n", "no name"),
        ("BBox_List_2017.csv", BBOX_HEADER + "00000002_000.png,Mass,1,1,1,1,,,,9\n", "10 cells"),
    ],
)
def test_chestxray14_malformed_files_are_named(tmp_path, file, text, message) -> None:
    make_nih(tmp_path)
    write(tmp_path / file, text)
    with pytest.raises(ValueError, match=message) as err:
        benchmarks.read("chestxray14", tmp_path)
    assert file in str(err.value)


# ------------------------------------------------------------------------------------ CheXpert


def test_chexpert(tmp_path) -> None:
    make_chexpert(tmp_path)
    reader = benchmarks.CheXpert(tmp_path)
    frame = reader.frame
    small = tmp_path / "CheXpert-v1.0-small"
    assert frame["image"].tolist() == [
        str(small / "valid" / "patient64541" / "study1" / "view1_frontal.jpg"),
        str(small / "valid" / "patient64542" / "study1" / "view2_lateral.jpg"),
        str(tmp_path / "test" / "patient64741" / "study1" / "view1_frontal.jpg"),
    ]
    assert frame["split"].tolist() == ["val", "val", "test"]
    assert frame["patient_id"].tolist() == ["patient64541", "patient64542", "patient64741"]
    assert frame["view"].tolist() == ["AP", "Lateral", ""]
    assert frame.iloc[0]["No Finding"] == 1 and frame.iloc[0]["Cardiomegaly"] == 0
    lateral = frame.iloc[1]
    assert lateral["Cardiomegaly"] == 1 and lateral["Lung Opacity"] == 1
    assert math.isnan(lateral["Edema"])  # -1: uncertain
    assert math.isnan(lateral["Consolidation"])  # blank: not mentioned
    assert lateral["Pneumonia"] == 0 and lateral["Support Devices"] == 1
    assert frame.iloc[2][["Cardiomegaly", "Edema", "Pleural Effusion"]].tolist() == [1, 1, 1]
    assert reader.csv["file"].tolist() == ["valid.csv", "valid.csv", "test.csv"]
    assert all(b == [] for b in frame["boxes"])


def test_chexpert_from_the_full_size_folder_alone(tmp_path) -> None:
    make_chexpert(tmp_path / "staging")
    text = (tmp_path / "staging" / "CheXpert-v1.0-small" / "valid.csv").read_text()
    write(tmp_path / "CheXpert-v1.0" / "valid.csv", text.replace("-small", ""))
    frame = benchmarks.read("chexpert", tmp_path)
    assert frame["split"].tolist() == ["val", "val"]
    assert frame["image"][0] == str(
        tmp_path / "CheXpert-v1.0" / "valid" / "patient64541" / "study1" / "view1_frontal.jpg"
    )


@pytest.mark.parametrize(
    ("value", "message"), [("2", "expected 1, 0, -1 or blank"), ("yes", "not a number")]
)
def test_chexpert_malformed_labels(tmp_path, value, message) -> None:
    make_chexpert(tmp_path)
    path = tmp_path / "test.csv"
    path.write_text(path.read_text().replace(",1,0,0,1\n", f",1,0,0,{value}\n"))
    with pytest.raises(ValueError, match=message) as err:
        benchmarks.read("chexpert", tmp_path)
    assert "test.csv" in str(err.value)


def test_chexpert_missing_label_column(tmp_path) -> None:
    make_chexpert(tmp_path)
    path = tmp_path / "test.csv"
    path.write_text(path.read_text().replace("Fracture", "Fractures"))
    with pytest.raises(ValueError, match=r"test\.csv lacks columns \['Fracture'\]"):
        benchmarks.read("chexpert", tmp_path)


# ------------------------------------------------------------------------------------ PadChest


@pytest.mark.parametrize("gzipped", [False, True])
def test_padchest(tmp_path, gzipped) -> None:
    make_padchest(tmp_path, gzipped)
    reader = benchmarks.PadChest(tmp_path)
    frame = reader.frame
    assert len(reader.pathologies) == 193 and "normal" in reader.pathologies
    folders = [("0", "a.png"), ("1", "b.png"), ("1", "c.png"), ("12", "d.png")]
    assert frame["image"].tolist() == [str(tmp_path / d / n) for d, n in folders]
    assert set(frame["split"]) == {"test"}
    a, b, c, d = (frame.iloc[i] for i in range(4))
    assert a["pleural effusion"] == 1 and a["cardiomegaly"] == 1  # " cardiomegaly " stripped
    assert a[list(reader.pathologies)].sum() == 2
    assert b["normal"] == 1 and b[list(reader.pathologies)].sum() == 1
    assert c[list(reader.pathologies)].isna().all()  # no labels: unknown
    assert d["COPD signs"] == 1 and d[list(reader.pathologies)].sum() == 1
    assert d["findings"] == ["COPD signs", "zebra stripes"]
    assert frame["method_label"].tolist() == ["Physician", "Physician", "RNN_model", "RNN_model"]
    assert frame["patient_id"].tolist() == ["p1", "p2", "p2", "p3"]
    assert frame["view"].tolist() == ["PA", "L", "PA", "AP_horizontal"]


@pytest.mark.parametrize(
    "labels", ["__import__('os').system('touch hacked')", "['normal'", "{'normal': 1}"]
)
def test_padchest_labels_are_literals_only(tmp_path, labels) -> None:
    text = padchest_csv().replace("['normal']", f'"{labels}"')
    write(tmp_path / PADCHEST_FILE, text)
    with pytest.raises(ValueError, match="Labels") as err:
        benchmarks.read("padchest", tmp_path)
    assert PADCHEST_FILE in str(err.value)
    assert not (Path.cwd() / "hacked").exists()


# -------------------------------------------------------------------------------------- Open-I


def test_openi(tmp_path) -> None:
    make_openi(tmp_path)
    reader = benchmarks.OpenI(tmp_path)
    frame = reader.frame
    png = tmp_path / "NLMCXR_png"
    assert sorted(frame["image"]) == sorted(
        str(png / f"{i}.png")
        for i in (
            "CXR1_1_IM-0001-3001",
            "CXR1_1_IM-0001-4001",
            "CXR2_IM-0652-1001",
            "CXR3_IM-1384-1001",
            "CXR5_IM-2000-1001",
        )
    )
    assert len(reader.csv) == 5 and set(frame["split"]) == {"test"}
    first = row(frame, "image", "CXR1_1_IM-0001-4001.png")
    classes = list(reader.pathologies)
    assert first["Cardiomegaly"] == 1 and first["Opacity"] == 1 and first[classes].sum() == 2
    assert first["report_id"] == "CXR1"
    assert first["mesh"] == [
        "Cardiomegaly/borderline",
        "Pulmonary Artery/enlarged",
        "Opacity/lung/base/left",
    ]
    assert first["report"] == (
        "FINDINGS: Borderline cardiomegaly. No ___ effusion.\n\nIMPRESSION: Normal chest x-___."
    )
    assert row(frame, "image", "CXR2_IM-0652-1001.png")[classes].sum() == 0  # normal
    assert row(frame, "image", "CXR3_IM-1384-1001.png")[classes].isna().all()  # No Indexing
    assert row(frame, "image", "CXR5_IM-2000-1001.png")[classes].sum() == 0  # anatomy only
    assert "Pulmonary Artery" not in classes and "Lung" not in classes


def test_openi_malformed_xml(tmp_path) -> None:
    make_openi(tmp_path)
    write(tmp_path / "ecgen-radiology" / "6.xml", "<eCitation><MeSH><major>x</MeSH>")
    with pytest.raises(ValueError, match=r"6\.xml cannot be parsed as XML"):
        benchmarks.read("openi", tmp_path)


# -------------------------------------------------------------------------------- ChestX-Det10


def test_chestxdet10(tmp_path) -> None:
    make_chestxdet10(tmp_path)
    frame = benchmarks.read("chestxdet10", tmp_path)
    assert frame["image"].tolist() == [
        str(tmp_path / "train_data" / "36199.png"),
        str(tmp_path / "train_data" / "36200.png"),
        str(tmp_path / "test_data" / "50000.png"),
    ]
    assert frame["split"].tolist() == ["train", "train", "test"]
    assert frame["Fibrosis"].tolist() == [1, 0, 0] and frame["Nodule"].tolist() == [1, 0, 0]
    assert frame["Effusion"].tolist() == [0, 0, 1]
    assert frame.iloc[1][list(benchmarks.ChestXDet10.pathologies)].sum() == 0
    assert frame.iloc[0]["boxes"] == [
        box("Fibrosis", 632, 721, 909, 969),
        box("Fibrosis", 129, 611, 474, 909),
        box("Nodule", 10, 20, 30, 40),
    ]
    (tmp_path / "train.json").unlink()
    assert benchmarks.read("chestxdet10", tmp_path)["split"].tolist() == ["test"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"file_name": "x.png", "syms": ["Mass"], "boxes": []}, "do not pair up"),
        ({"file_name": "x.png", "syms": ["Zebra"], "boxes": [[1, 2, 3, 4]]}, "Zebra"),
        ({"file_name": "x.png", "syms": ["Mass"], "boxes": [[1, 2, 3]]}, "not 4 numbers"),
        ({"name": "x.png"}, "lacks file_name"),
    ],
)
def test_chestxdet10_malformed(tmp_path, entry, message) -> None:
    make_chestxdet10(tmp_path)
    write(tmp_path / "test.json", json.dumps([entry]))
    with pytest.raises(ValueError, match=message) as err:
        benchmarks.read("chestxdet10", tmp_path)
    assert "test.json" in str(err.value)
    write(tmp_path / "test.json", "[{")
    with pytest.raises(ValueError, match=r"test\.json cannot be parsed as JSON"):
        benchmarks.read("chestxdet10", tmp_path)


# -------------------------------------------------------------------------------------- MS-CXR


def test_mscxr(tmp_path) -> None:
    make_mscxr(tmp_path)
    frame = benchmarks.read("mscxr", tmp_path)
    assert frame["image"].tolist() == [
        str(tmp_path / MSCXR_PATH),
        str(tmp_path / "files/p11/p11000001/s50000001/0a1b2c3d.jpg"),
    ]
    assert frame["split"].tolist() == ["test", "val"]
    assert frame["dicom_id"].tolist() == ["675d792f", "0a1b2c3d"]
    assert frame["patient_id"].tolist() == ["10233088", "11000001"]
    assert frame["study_id"].tolist() == ["54276838", "50000001"]
    assert frame["height"].tolist() == [3056, 2544] and frame["width"].tolist() == [2544, 3056]
    first = frame.iloc[0]
    assert first["Pneumonia"] == 1 and first["Pleural Effusion"] == 1
    assert math.isnan(first["Cardiomegaly"])  # not annotated is not absent
    phrase = "Right lower lobe pneumonia"
    assert first["boxes"] == [
        {**box("Pneumonia", 10, 20, 39, 59), "phrase": phrase},
        {**box("Pneumonia", 100, 200, 149, 259), "phrase": phrase},
        {**box("Pleural Effusion", 2500, 3000, 2543, 3055), "phrase": "small, left effusion"},
    ]
    assert frame.iloc[1]["boxes"] == [
        {**box("Cardiomegaly", 500, 600, 1499, 1299), "phrase": "Cardiomegaly"}
    ]


def test_mscxr_first_release_has_no_split(tmp_path) -> None:
    make_mscxr(tmp_path, "v1.0.0")
    frame = benchmarks.read("mscxr", tmp_path)
    assert frame["split"].tolist() == ["test", "test"] and len(frame.iloc[0]["boxes"]) == 3


def test_mscxr_malformed(tmp_path) -> None:
    make_mscxr(tmp_path)
    path = tmp_path / "MS_CXR_Local_Alignment_v1.1.0.csv"
    path.write_text(path.read_text().replace(",val\n", ",holdout\n"))
    with pytest.raises(ValueError, match=r"v1\.1\.0\.csv: unknown split 'holdout'"):
        benchmarks.read("mscxr", tmp_path)
    path.write_text(path.read_text().replace(",holdout\n", ",val\n").replace(",500,600,", ",,600,"))
    with pytest.raises(ValueError, match=r"v1\.1\.0\.csv: a box of 0a1b2c3d lacks"):
        benchmarks.read("mscxr", tmp_path)


# ---------------------------------------------------------------------------------------- SIIM


def test_decode_rle_against_a_hand_built_mask() -> None:
    # 3 rows x 4 columns, counted down the columns: start 1, run 2 -> pixels 1, 2 (column 0,
    # rows 1-2); the next start counts from the end of that run: 3 + 3 = 6 -> column 2, row 0.
    expected = np.zeros((3, 4), dtype=bool)
    expected[1:3, 0] = True
    expected[0, 2] = True
    assert decode_rle("1 2 3 1", 3, 4).tolist() == expected.tolist()
    # Several encodings of one image are OR-ed; "-1" adds nothing.
    other = np.zeros((3, 4), dtype=bool)
    other[2, 3] = True
    assert decode_rle(["1 2 3 1", "-1", "11 1"], 3, 4).tolist() == (expected | other).tolist()
    assert not decode_rle("-1", 3, 4).any() and decode_rle([], 3, 4).shape == (3, 4)


def test_decode_rle_round_trips_random_masks() -> None:
    rng = np.random.default_rng(0)
    for height, width in [(7, 5), (16, 16), (5, 9)]:
        mask = rng.random((height, width)) < 0.3
        assert (decode_rle(encode_rle(mask), height, width) == mask).all()


@pytest.mark.parametrize("rle", ["1 2 3", "a b", "5 -2", "0 13"])
def test_decode_rle_rejects_bad_encodings(rle) -> None:
    with pytest.raises(ValueError, match="RLE"):
        decode_rle(rle, 3, 4)


@pytest.mark.parametrize("name", ["train-rle.csv", "stage_2_train.csv"])
def test_siim(tmp_path, name) -> None:
    make_siim(tmp_path, name)
    reader = benchmarks.SIIM(tmp_path)
    frame = reader.frame
    assert len(reader.csv) == 3 and len(frame) == 2
    positive, negative = frame.iloc[0], frame.iloc[1]
    assert positive["image"] == str(
        tmp_path
        / "dicom-images-train"
        / "1.2.276.0.7230010.3.1.2"
        / "1.2.276.0.7230010.3.1.3"
        / f"{SIIM_IMAGE}.dcm"
    )  # found by name in the nested folders
    assert negative["image"] == str(
        tmp_path / "dicom-images-train" / "1.2.276.0.7230010.3.1.4.8323329.1034.1517875166.8504.dcm"
    )
    assert positive["rle"] == ["5 3 1024 2", "1000000 4"] and negative["rle"] == []
    assert frame["Pneumothorax"].tolist() == [1, 0]
    assert (frame["height"] == 1024).all() and (frame["width"] == 1024).all()
    mask = decode_rle(positive["rle"], 1024, 1024)
    assert mask.sum() == 9
    assert mask[5:8, 0].all() and mask[8:10, 1].all()  # 5+3+1024 = 1032 -> column 1, row 8
    assert mask[1000000 % 1024 : 1000000 % 1024 + 4, 1000000 // 1024].all()


def test_siim_malformed(tmp_path) -> None:
    make_siim(tmp_path)
    path = tmp_path / "train-rle.csv"
    path.write_text(path.read_text().replace(" 1000000 4", " 1000000 4 7"))
    with pytest.raises(ValueError, match=r"train-rle\.csv: .*RLE '1000000 4 7'"):
        benchmarks.read("siim", tmp_path)
    path.write_text("ImageId,Pixels\nx,-1\n")
    with pytest.raises(ValueError, match=r"train-rle\.csv lacks columns \['EncodedPixels'\]"):
        benchmarks.read("siim", tmp_path)


# ---------------------------------------------------------------------------------------- RSNA


def test_rsna(tmp_path) -> None:
    make_rsna(tmp_path)
    reader = benchmarks.RSNA(tmp_path)
    frame = reader.frame
    assert len(reader.csv) == 4 and len(frame) == 3
    assert frame["image"].tolist() == [
        str(tmp_path / "stage_2_train_images" / f"{p}.dcm")
        for p in (
            "0004cfab-14fd-4e49-80ba-63a80b6bddd6",
            "00436515-870c-4b36-a041-de91049b9ab4",
            "00704310-78a8-4b38-8475-49f4573b2dbb",
        )
    ]
    assert frame["Pneumonia"].tolist() == [0, 1, 1]
    assert frame["boxes"].tolist() == [
        [],
        [box("Pneumonia", 264, 152, 476, 530), box("Pneumonia", 562, 152, 817, 604)],
        [box("Pneumonia", 323, 577, 482, 680)],
    ]
    assert frame["patient_id"][0] == "0004cfab-14fd-4e49-80ba-63a80b6bddd6"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0004cfab-14fd-4e49-80ba-63a80b6bddd6,1,2,3,4,1\n", "Target"),  # 0 and 1 for one image
        ("abc,,,,,1\n", "Target 1 with box"),
        ("abc,1,2,3,4,0\n", "Target 0 with box"),
        ("abc,1,,3,4,1\n", "Target 1 with box"),
        ("abc,,,,,yes\n", "Target 'yes'"),
    ],
)
def test_rsna_malformed(tmp_path, line, message) -> None:
    make_rsna(tmp_path)
    path = tmp_path / "stage_2_train_labels.csv"
    path.write_text(path.read_text() + line)
    with pytest.raises(ValueError, match=message) as err:
        benchmarks.read("rsna", tmp_path)
    assert "stage_2_train_labels.csv" in str(err.value)


# ------------------------------------------------------------------------------------------ S3


def test_reading_from_s3(s3_bucket, tmp_path) -> None:
    root = f"s3://{s3_bucket}/benchmarks"
    for name in ("openi", "chestxray14", "siim"):
        make = tmp_path / name
        MAKERS[name](make)
        for path in make.rglob("*"):
            if path.is_file():
                storage.write_bytes(f"{root}/{name}/{path.relative_to(make)}", path.read_bytes())
        local = benchmarks.read(name, make)
        remote = benchmarks.read(name, f"{root}/{name}")
        assert all(uri.startswith(f"{root}/{name}/") for uri in remote["image"])
        assert [u[len(f"{root}/{name}/") :] for u in remote["image"]] == [
            str(Path(p).relative_to(make)) for p in local["image"]
        ]
        assert remote.drop(columns="image").equals(local.drop(columns="image"))
    with pytest.raises(FileNotFoundError, match=f"{root}/rsna"):
        benchmarks.read("rsna", f"{root}/rsna")
