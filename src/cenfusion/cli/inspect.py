"""``cenfusion inspect CKPT``: what the fusion of a trained checkpoint does.

Prints, per exchange site and modality, how many channels are exchanged (``|γ| < θ``) and
statistics of ``|γ|``, then totals per modality. ``θ`` is each site's own; for a model trained
with exchange off, the config's threshold (or ``--threshold``) says what *would* exchange.

  cenfusion inspect CKPT [--threshold T] [--json stats.json]
  cenfusion inspect CKPT --plot gammas.png [--layers layer1.0.bn2 layer4.1.bn2] [--channels 128]
  cenfusion inspect CKPT --history exchange.png
  cenfusion inspect CKPT --cost 480 640
  cenfusion inspect CKPT --features maps.png --rgb a.png --depth b.png [--feature-layer L]
                         [--after-exchange]

``--plot``: the share of channels exchanged at every site, and at each of ``--layers`` (default:
the first, middle and last site) the ``|γ|`` of the first ``--channels`` channels per modality
and each modality's share ``|γ_m| / Σ |γ|`` per channel.

``--history``: from the epoch records the checkpoint carries, per modality and exchange site,
the share of the modality's penalised channels (its disjoint chunk) below ``θ`` after each
epoch: a learned exchange keeps the lines apart, a too strong λ sends them all to 1 at once.

``--features``: one ``--<modality> PATH`` per modality of the checkpoint (read as ``cenfusion
predict`` reads them); the output of the exchange site ``--feature-layer`` (default: the middle
site), averaged over the channel groups of the paper's visualisation: per modality, the channels
only it keeps (``|γ| ≥ θ``, all others below), and the channels every modality keeps. For two
modalities these are (γ_rgb ≈ 0, γ_depth > 0), (γ_rgb > 0, γ_depth ≈ 0) and (both > 0). Each
branch's own features are shown, before the exchange at that layer (``--after-exchange``: what
the next layer sees, where a given-away channel holds the other modalities' values).

A layer is named by its full module name or any unique dotted tail (``layer2.1.bn2``).
Plots need matplotlib: pip install 'cenfusion[plot]'.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from cenfusion.analysis import (
    find_site,
    format_statistics,
    sample_feature_groups,
    scaling_factors,
    site_statistics,
    site_thresholds,
)
from cenfusion.analysis.cost import model_cost
from cenfusion.analysis.plots import (
    plot_exchange_history,
    plot_feature_groups,
    plot_scaling_factors,
)
from cenfusion.cli.predict import parse_modality_flags
from cenfusion.engine.checkpoint import load_checkpoint
from cenfusion.nn import exchange_sites
from cenfusion.tasks import load_trained


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="scaling-factor statistics, plots and feature maps of a checkpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --<modality> flags must never be taken for a prefix of ours
    )
    parser.add_argument("checkpoint", help="a cenfusion checkpoint (.pt)")
    parser.add_argument(
        "--threshold", type=float, help="θ to count exchanged channels at (default: the model's)"
    )
    parser.add_argument("--json", help="also write the statistics to this JSON file")
    parser.add_argument("--plot", help="draw the scaling-factor figures to this PNG")
    parser.add_argument("--layers", nargs="+", help="exchange sites for --plot")
    parser.add_argument(
        "--channels", type=int, default=128, help="channels drawn per layer (default 128)"
    )
    parser.add_argument(
        "--history",
        help="draw each modality's share of penalised channels below θ over training (from the "
        "checkpoint's epoch records) to this PNG",
    )
    parser.add_argument(
        "--cost",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="print parameters and GFLOPs per part (and per branch) of one forward pass on one "
        "H x W input per modality",
    )
    parser.add_argument("--features", help="draw the feature-map groups to this PNG")
    parser.add_argument("--feature-layer", help="exchange site for --features")
    parser.add_argument(
        "--after-exchange",
        action="store_true",
        help="--features: show the site's output after its exchange (default: before)",
    )
    parser.set_defaults(func=run, accepts_extra=True)


def run(args: argparse.Namespace) -> int:
    files = parse_modality_flags(args.extra)
    if files and not args.features:
        raise ValueError(f"--{next(iter(files))} is an input for --features, which is not given")
    for name, path in files.items():
        if not path.is_file():
            raise FileNotFoundError(f"--{name}: {str(path)!r} does not exist")
    if args.channels < 1:
        raise ValueError(f"--channels: expected a positive number, got {args.channels}")
    if (args.feature_layer or args.after_exchange) and not args.features:
        raise ValueError("--feature-layer and --after-exchange go with --features, not given")
    if args.layers and not args.plot:
        raise ValueError("--layers chooses the layers of --plot, which is not given")

    payload = load_checkpoint(args.checkpoint)
    task, model, config = load_trained(args.checkpoint, payload)
    sites = [name for name, _ in exchange_sites(model)]
    if not sites:
        raise ValueError(f"checkpoint {args.checkpoint!r}: the model has no exchange sites")
    layers = [find_site(sites, layer) for layer in args.layers or []] or None
    feature_layer = find_site(sites, args.feature_layer) if args.feature_layer else None

    threshold = args.threshold
    if threshold is None and any(exchange_sites(model, exchanging=False)):
        key = task.threshold_key
        threshold = getattr(config.model, key)
        print(
            f"exchange is off at some or all sites of this model: counting |γ| < {threshold:g} "
            f"(model.{key})"
        )
    stats = site_statistics(model, threshold)
    print(f"{args.checkpoint}: modalities {', '.join(model.modalities)}")
    print(format_statistics(stats))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"checkpoint": str(args.checkpoint), "sites": [s.as_dict() for s in stats]}
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {path}")

    thresholds = site_thresholds(model, threshold)
    if args.plot:
        written = plot_scaling_factors(
            scaling_factors(model),
            tuple(model.modalities),
            thresholds,
            layers,
            args.plot,
            channels=args.channels,
        )
        print(f"wrote {written}")
    if args.cost:
        height, width = args.cost
        network = getattr(model, "generator", model)  # translation: the generator's cost
        channels = int(getattr(network, "in_channels", 3))
        inputs = {m: torch.zeros(1, channels, height, width) for m in model.modalities}
        title = f"one {height}x{width} input per modality ({', '.join(model.modalities)})"
        print(model_cost(network, inputs).format(title))
    if args.history:
        history = json.loads(payload.get("history", "[]"))
        written = plot_exchange_history(history, tuple(model.modalities), args.history)
        print(f"wrote {written}")
    if args.features:
        site = feature_layer or sites[len(sites) // 2]
        theta = thresholds[site]
        inputs = task.read_inputs(model, config, files)
        groups, images = sample_feature_groups(
            model, inputs, site, theta, args.after_exchange, task.inference_mode(model, config)
        )
        written = plot_feature_groups(
            groups, tuple(model.modalities), images, site, theta, args.features, args.after_exchange
        )
        print(f"wrote {written}")
    return 0
