"""``cenfusion synth``: write the built-in synthetic scenes in real data-set layouts.

``cenfusion synth nyudv2 OUT``, ``cenfusion synth taskonomy OUT``, ``cenfusion synth folder
OUT`` and ``cenfusion synth preview OUT.png``.
"""

from __future__ import annotations

import argparse

from cenfusion.data.synthetic import DEFAULT_SIZE
from cenfusion.data.synthetic.preview import save_preview
from cenfusion.data.synthetic.writers import (
    TASKONOMY_DOMAINS,
    write_folder,
    write_nyudv2,
    write_taskonomy,
)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default: 0)")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=list(DEFAULT_SIZE),
        help=f"image height and width (default: {DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]})",
    )


def _writer(parser: argparse.ArgumentParser, n_train: int, n_val: int) -> None:
    parser.add_argument("out", help="output folder (must be empty unless --force)")
    parser.add_argument(
        "--n-train", type=int, default=n_train, help="training scenes (default: %(default)s)"
    )
    parser.add_argument(
        "--n-val", type=int, default=n_val, help="validation scenes (default: %(default)s)"
    )
    parser.add_argument(
        "--n-test", type=int, default=0, help="held-out test scenes, test.txt (default: none)"
    )
    _common(parser)
    parser.add_argument(
        "--void-holes", action="store_true", help="label depth holes 255 (void) in the masks"
    )
    parser.add_argument(
        "--force", action="store_true", help="write into a non-empty folder, overwriting files"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _run_nyudv2(args: argparse.Namespace) -> int:
    root = write_nyudv2(
        args.out,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        size=tuple(args.size),
        void_holes=args.void_holes,
        force=args.force,
        progress=not args.no_progress,
    )
    print(
        f"wrote {args.n_train} train + {args.n_val} val{_test(args)} NYUDv2-format scenes to {root}"
    )
    return 0


def _test(args: argparse.Namespace) -> str:
    return f" + {args.n_test} test" if args.n_test else ""


def _run_taskonomy(args: argparse.Namespace) -> int:
    root = write_taskonomy(
        args.out,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        size=tuple(args.size),
        domains=args.domains or tuple(TASKONOMY_DOMAINS),
        void_holes=args.void_holes,
        force=args.force,
        progress=not args.no_progress,
    )
    counts = f"{args.n_train} train + {args.n_val} val{_test(args)}"
    print(f"wrote {counts} Taskonomy-format scenes to {root}")
    return 0


def _run_preview(args: argparse.Namespace) -> int:
    path = save_preview(args.out, n=args.n, seed=args.seed, size=tuple(args.size))
    print(f"wrote a preview of {args.n} scenes to {path}")
    return 0


def _run_folder(args: argparse.Namespace) -> int:
    root = write_folder(
        args.out,
        modalities=args.modalities,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        size=tuple(args.size),
        void_holes=args.void_holes,
        force=args.force,
        progress=not args.no_progress,
    )
    counts = f"{args.n_train} + {args.n_val}{_test(args)}"
    print(f"wrote {counts} scenes ({', '.join(args.modalities)}) to {root}")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``synth`` and its four sub-commands."""
    parser = subparsers.add_parser(
        "synth",
        help="generate the built-in synthetic scenes",
        description="Generate procedural RGB-D scenes in real data-set layouts, or a preview.",
    )
    formats = parser.add_subparsers(dest="synth_format", required=True, metavar="FORMAT")

    nyudv2 = formats.add_parser(
        "nyudv2",
        help="rgb/, depth/ (x5000 uint16), masks/ and train.txt/val.txt lists",
        description="Write scenes in the NYUDv2 layout of the public code.",
    )
    _writer(nyudv2, n_train=795, n_val=654)
    nyudv2.set_defaults(func=_run_nyudv2)

    taskonomy = formats.add_parser(
        "taskonomy",
        help="one folder per domain, Taskonomy file names, train.txt/val.txt",
        description="Write scenes in the Taskonomy sample layout (one folder per domain).",
    )
    _writer(taskonomy, n_train=1000, n_val=500)
    taskonomy.add_argument(
        "--domains",
        nargs="+",
        metavar="DOMAIN",
        help="domains to write (default: all: rgb normal reshading depth_zbuffer "
        "edge_occlusion edge_texture segment_semantic texture)",
    )
    taskonomy.set_defaults(func=_run_taskonomy)

    folder = formats.add_parser(
        "folder",
        help="<modality>/<id>.png, label/<id>.png and id lists: the layout of your own data",
        description="Write scenes in the folder layout that data.format: folder reads.",
    )
    _writer(folder, n_train=600, n_val=100)
    folder.add_argument(
        "--modalities",
        nargs="+",
        metavar="MODALITY",
        default=["rgb", "depth"],
        help="modalities to write (default: rgb depth; also normal reshading texture "
        "edge_occlusion edge_texture)",
    )
    folder.set_defaults(func=_run_folder)

    preview = formats.add_parser(
        "preview",
        help="a PNG grid of a few scenes, one column per modality",
        description="Save a grid of scenes (rows) by modalities (columns), colourised.",
    )
    preview.add_argument("out", help="output .png file (overwritten if it exists)")
    preview.add_argument("--n", type=int, default=4, help="number of scenes (default: 4)")
    _common(preview)
    preview.set_defaults(func=_run_preview)
