"""``cenfusion prepare nyudv2 --labeled nyu_depth_v2_labeled.mat --splits splits.mat
--mapping classMapping40.mat OUT``: a real data set from its official files.

Writes the layout ``data.format: nyudv2`` reads (see :mod:`cenfusion.data.prepare.nyudv2`):
RGB, 16-bit depth (metres x 5000), 40-class masks and the public code's ``train.txt`` (795
images) and ``val.txt`` (654) from the official split. Needs the ``prepare`` extra (h5py and
SciPy).
"""

from __future__ import annotations

import argparse

from cenfusion.data.prepare import prepare_nyudv2


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
