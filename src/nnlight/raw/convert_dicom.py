"""nnlight-convert-dicom: a DICOM collection with DICOM SEG labels (the layout TCIA serves) as an nnU-Net raw dataset
(issue 34, item 4).

The collection is scanned as nnlight-predict scans DICOM input (any depth and names, one case per image series, or
per study with a channel rule). Each SEG is matched to the series it refers to (ReferencedSeriesSequence) and its
frames to that series' slices (by SOPInstanceUID, never by order), so the label map has the image's geometry.
Labels are unified across cases by segment name: a name is one label whatever its case and spacing, and a JSON
mapping file names the synonyms (``{"liver": ["Liver", "liver parenchyma"], ...}``; its order is the labels'
order). Whatever the user should know is one line each: segments no label takes, empty segments, overlapping
segments (the higher label is kept, nnU-Net's labels being exclusive), series without a SEG, series that cannot be
read, RTSTRUCT files (set aside: see :data:`RTSTRUCT_NOTE`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnlight.raw.dicom import (
    ChannelRule,
    DicomSeries,
    cases_by_channel_rules,
    highdicom_module,
    read_dicom_case,
    scan_dicom,
)
from nnlight.raw.io import write_image, write_seg
from nnlight.raw.synthetic import new_dataset_folder
from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.errors import UserError, exit_on_user_error
from nnlight.utils.files import atomic_write_json, load_json

RTSTRUCT_NOTE = ("RTSTRUCT labels are not converted yet (their contours need rasterizing, and the maintained "
                 "library for it, rt-utils, brings OpenCV); export them as DICOM SEG (e.g. with 3D Slicer)")


@dataclass
class Conversion:
    """What a conversion made and the lines the user should read."""

    dataset: Path
    cases: list[str]
    labels: dict[str, int]
    channel_names: dict[str, str]
    notes: list[str] = field(default_factory=list)


def _key(name: str) -> str:
    """Segment names that differ only in case, spaces, dashes or underscores are the same name."""
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def label_names(file: Path | None) -> dict[str, str] | None:
    """The mapping file as ``{name key: label}`` (each label also its own synonym), in the file's order."""
    if file is None:
        return None
    try:
        values = load_json(file)
    except (OSError, ValueError) as e:
        raise UserError(f"labels={file}: cannot be read as JSON ({e})") from None
    if not isinstance(values, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                               for v in values.values()):
        raise UserError(f'labels={file}: write {{"<label>": ["<segment name>", ...], ...}}, e.g. {{"liver": '
                        '["Liver", "liver parenchyma"]}')
    names: dict[str, str] = {}
    for label, synonyms in values.items():
        for synonym in (label, *synonyms):
            if names.setdefault(_key(synonym), label) != label:
                raise UserError(f"labels={file}: {synonym!r} is a name of both {names[_key(synonym)]!r} and "
                                f"{label!r}; give it to one label")
    return names


def convert_dicom(collection: Path, raw_root: Path, dataset_id: int, name: str, channels: list[str] | None = None,
                  labels_file: Path | None = None) -> Conversion:
    """Write ``<raw_root>/Dataset<id>_<name>`` from ``collection``'s image series and their SEGs."""
    hd = highdicom_module("nnlight-convert-dicom (reading DICOM SEG)")
    if not collection.is_dir():
        raise UserError(f"input={collection}: not a folder; give the folder the collection was downloaded to")
    rules = None if channels is None else [ChannelRule.parse(rule) for rule in channels]
    synonyms = label_names(labels_file)
    scan = scan_dicom(collection)
    notes = [f"series {case}: {why} (left out)" for case, why in scan.failed.items()]
    notes += [f"{path}: {RTSTRUCT_NOTE}" for path in scan.structure_sets]
    if rules is None:
        cases: dict[str, tuple[DicomSeries, ...]] = {s.case_id: (s,) for s in scan.series}
    else:
        cases, failed = cases_by_channel_rules(scan.series, rules)
        notes += [f"study {case}: {why} (left out)" for case, why in failed.items()]
    case_of = {series.uid: case for case, members in cases.items() for series in members}
    series_of = {series.uid: series for members in cases.values() for series in members}
    segs: dict[str, list[tuple[Path, Any]]] = {}
    for path in scan.segmentations:
        seg = hd.seg.segread(str(path))
        referenced = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
        if referenced not in case_of:
            notes.append(f"{path}: its series {referenced} is not among the cases' series (left out)")
            continue
        segs.setdefault(case_of[referenced], []).append((path, seg))
    notes += [f"case {case} ({members[0].files[0].parent}): no SEG refers to it (left out)"
              for case, members in cases.items() if case not in segs]
    if not segs:
        raise UserError(f"input={collection}: no image series with a DICOM SEG referring to it"
                        + (f" ({notes[0]})" if notes else "") + "; nnlight-convert-dicom needs the labels as SEG")

    spellings = {_key(str(d.SegmentLabel)): str(d.SegmentLabel) for found in segs.values() for _, seg in found
                 for d in seg.SegmentSequence}
    if synonyms is None:  # every name its own label, alphabetically
        synonyms = {key: spellings[key] for key in sorted(spellings)}
    values = {label: value for value, label in enumerate(dict.fromkeys(synonyms.values()), start=1)}
    label_maps = {}
    for case, found in sorted(segs.items()):
        label_map, case_notes = _label_map(case, found, series_of, synonyms, values)
        notes += case_notes
        if label_map is not None:
            label_maps[case] = label_map
    if not label_maps:
        raise UserError(f"input={collection}: no SEG could be read onto its series ({notes[-1]})")

    channel_names = _channel_names([cases[case] for case in label_maps], rules)
    target = raw_root / f"Dataset{dataset_id:03d}_{name}"
    with new_dataset_folder(raw_root, dataset_id, name) as staging:
        for k, (case, label_map) in enumerate(label_maps.items(), start=1):
            print(f"  case {k}/{len(label_maps)}: {case}", flush=True)
            images, geometry = read_dicom_case(cases[case])
            for channel, image in enumerate(images):
                write_image(image, staging / "imagesTr" / f"{case}_{channel:04d}.nii.gz", geometry)
            write_seg(label_map, staging / "labelsTr" / f"{case}.nii.gz", geometry)
        atomic_write_json(staging / "dataset.json", {
            "name": name, "description": f"converted by nnlight-convert-dicom from {collection.name}",
            "channel_names": channel_names, "labels": {"background": 0, **values}, "numTraining": len(label_maps),
            "file_ending": ".nii.gz"})
        atomic_write_json(staging / "conversion.json", {"collection": str(collection.resolve()),
                                                       "channel_rules": channels, "notes": notes,
                                                       "cases": {case: [s.uid for s in cases[case]]
                                                                 for case in label_maps}})
    return Conversion(target, list(label_maps), {"background": 0, **values}, channel_names, notes)


def _label_map(case: str, found: list[tuple[Path, Any]], series_of: dict[str, DicomSeries],
               synonyms: dict[str, str], values: dict[str, int]) -> tuple[np.ndarray | None, list[str]]:
    """The case's segments painted into one label map on its series' slices (the higher label where they
    overlap), and its notes."""
    masks: dict[int, np.ndarray] = {}
    notes = []
    for path, seg in found:
        series = series_of[seg.ReferencedSeriesSequence[0].SeriesInstanceUID]
        try:
            frames = seg.get_pixels_by_source_instance(
                list(series.instance_uids), segment_numbers=[int(d.SegmentNumber) for d in seg.SegmentSequence],
                combine_segments=False, assert_missing_frames_are_empty=True)
        except (ValueError, KeyError, AttributeError) as e:
            notes.append(f"{path}: its frames cannot be placed on the slices of its series ({e}) (left out)")
            continue
        for index, description in enumerate(seg.SegmentSequence):
            name = str(description.SegmentLabel)
            label = synonyms.get(_key(name))
            if label is None:
                notes.append(f"case {case}: segment {name!r} ({path.name}) matches no label of the labels file "
                             "(left out; add it as a synonym)")
                continue
            mask = np.asarray(frames[..., index]) > 0
            if not mask.any():
                notes.append(f"case {case}: segment {name!r} is empty")
            masks[values[label]] = masks[values[label]] | mask if values[label] in masks else mask
    if not masks:
        return None, notes
    label_map = np.zeros(next(iter(masks.values())).shape, np.uint8 if max(values.values()) < 255 else np.uint16)
    names = {value: label for label, value in values.items()}
    for value in sorted(masks):
        overlap = int(np.count_nonzero(label_map[masks[value]]))
        if overlap:
            below = sorted({names[int(v)] for v in np.unique(label_map[masks[value]]) if v})
            notes.append(f"case {case}: {names[value]!r} overlaps {', '.join(map(repr, below))} in {overlap} "
                         f"voxels; {names[value]!r} (the higher label) is kept there")
        label_map[masks[value]] = value
    return label_map, notes


def _channel_names(cases: list[tuple[DicomSeries, ...]], rules: list[ChannelRule] | None) -> dict[str, str]:
    """"CT" where every case's series of a channel is a CT (nnU-Net then normalizes it as CT), else the rule (or
    the modality) naming it."""
    names = {}
    for channel in range(len(cases[0])):
        modalities = {members[channel].attribute("Modality") for members in cases}
        names[str(channel)] = "CT" if modalities == {"CT"} else rules[channel].text if rules else \
            "/".join(sorted(modalities))
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Convert a DICOM collection (image series with DICOM SEG labels, e.g. from TCIA) into an "
                    "nnU-Net raw dataset.",
        usage="nnlight-convert-dicom input=<collection folder> id=<number> name=<Name> [raw=data/raw] "
              "[channels=<rule>,<rule>] [labels=<mapping.json>]")
    parser.add_argument("input", help="the collection's folder (any depth, any file names)")
    parser.add_argument("--id", type=int, required=True, help="the dataset's number")
    parser.add_argument("--name", required=True, help="the dataset's name (Dataset<id>_<name>)")
    parser.add_argument("--raw", default=os.environ.get("NNLIGHT_RAW", "data/raw"),
                        help="raw datasets root (default: $NNLIGHT_RAW or data/raw)")
    parser.add_argument("--channels", nargs="+", default=None,
                        help="one rule per channel choosing its series in each study (README: DICOM); default: "
                             "every series with a SEG is a one-channel case")
    parser.add_argument("--labels", default=None, help='JSON {"<label>": ["<segment name>", ...]}: segment names '
                        "unified into labels, in this order")
    args = parser.parse_args(key_value_arguments(parser, argv))
    with exit_on_user_error():
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", args.name):
            raise UserError(f"name={args.name}: use letters, digits, - and _ (it becomes a folder name)")
        print(f"Reading the collection {args.input} ...", flush=True)
        done = convert_dicom(Path(args.input), Path(args.raw), args.id, args.name, args.channels,
                             Path(args.labels) if args.labels else None)
    print(f"Converted {len(done.cases)} case(s) into {done.dataset}\n  labels: {json.dumps(done.labels)}\n"
          f"  channels: {json.dumps(done.channel_names)}")
    if done.notes:
        print(f"{len(done.notes)} note(s) (also in {done.dataset / 'conversion.json'}):")
        print("\n".join(f"  - {note}" for note in done.notes))
    print(f"Next: nnlight-plan dataset={done.dataset.name}")


if __name__ == "__main__":
    main()
