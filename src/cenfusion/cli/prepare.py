"""``cenfusion prepare nyudv2|sunrgbd OUT ...``: a real data set from its official files.

``nyudv2 --labeled nyu_depth_v2_labeled.mat --splits splits.mat --mapping classMapping40.mat``
writes the layout ``data.format: nyudv2`` reads (:mod:`cenfusion.data.prepare.nyudv2`): RGB,
16-bit depth (metres x 5000), 40-class masks and the public code's ``train.txt`` (795 images)
and ``val.txt`` (654). ``sunrgbd --sunrgbd SUNRGBD --toolbox SUNRGBDtoolbox`` writes the
layout ``data.format: sunrgbd`` reads (:mod:`cenfusion.data.prepare.sunrgbd`): the JPEGs,
16-bit depth in millimetres, 37-class masks, ``train.txt`` (5285) and ``test.txt`` (5050).
``--hha`` adds the HHA encoding of the depth as a third modality's folder. Both need the
``prepare`` extra (h5py and SciPy).
"""

from __future__ import annotations

import argparse

from cenfusion.data.prepare import prepare_nyudv2, prepare_sunrgbd


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare", help="write a real data set from its official files in the loaders' layout"
    )
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    nyudv2 = datasets.add_parser(
        "nyudv2", help="NYUDv2 from nyu_depth_v2_labeled.mat, splits.mat, classMapping40.mat"
    )
    nyudv2.add_argument("out", help="output folder (new, or empty)")
    nyudv2.add_argument("--labeled", required=True, help="nyu_depth_v2_labeled.mat (v7.3)")
    nyudv2.add_argument("--splits", required=True, help="splits.mat (trainNdxs, testNdxs)")
    nyudv2.add_argument("--mapping", help="classMapping40.mat (mapClass); needed for 40 classes")
    nyudv2.add_argument(
        "--classes", type=int, default=40, choices=(40, 894), help="40 (default) or the raw 894"
    )
    nyudv2.add_argument(
        "--hha",
        action="store_true",
        help="also write hha/ (disparity, height, angle with gravity; the Kinect's intrinsics), "
        "a third modality: data.modality_settings.hha.folder=hha",
    )
    nyudv2.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    nyudv2.set_defaults(func=run_nyudv2)
    sunrgbd = datasets.add_parser(
        "sunrgbd", help="SUN RGB-D from the extracted SUNRGBD and SUNRGBDtoolbox folders"
    )
    sunrgbd.add_argument("out", help="output folder (new, or empty)")
    sunrgbd.add_argument(
        "--sunrgbd", required=True, help="the extracted SUNRGBD folder (kv1, kv2, realsense, xtion)"
    )
    sunrgbd.add_argument(
        "--toolbox",
        required=True,
        help="the extracted SUNRGBDtoolbox folder (Metadata/, traintestSUNRGBD/)",
    )
    sunrgbd.add_argument(
        "--hha",
        action="store_true",
        help="also write hha/ (disparity, height, angle with gravity; each sample's own camera "
        "matrix K), a third modality: data.modality_settings.hha.folder=hha",
    )
    sunrgbd.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sunrgbd.set_defaults(func=run_sunrgbd)


def run_nyudv2(args: argparse.Namespace) -> int:
    result = prepare_nyudv2(
        args.labeled,
        args.splits,
        args.out,
        mapping=args.mapping,
        classes=args.classes,
        progress=not args.no_progress,
        hha=args.hha,
    )
    print(result.summary())
    if args.classes != 40:
        print("raw classes: train with model.num_classes=894 data.ignore_index=65535")
    return 0


def run_sunrgbd(args: argparse.Namespace) -> int:
    result = prepare_sunrgbd(
        args.sunrgbd, args.toolbox, args.out, progress=not args.no_progress, hha=args.hha
    )
    print(result.summary())
    print(f"train with: cenfusion train sunrgbd_refinenet101 data.root={args.out}")
    return 0
