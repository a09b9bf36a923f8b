"""``nnlight-model``: hand a trained model to someone else, to nnU-Net, or to any ONNX runtime.

  nnlight-model export  dataset=D model=best|<configuration>/<experiment> output=model.zip
  nnlight-model export  format=onnx dataset=D model=<configuration>/<experiment> output=<folder>
  nnlight-model install model.zip   (unpacks under the results folder)
  nnlight-model export-nnunet dataset=D model=<configuration>/<experiment> output=<nnUNet_results>

Each takes trusted_networks=[my_lab.nets] where the model's network is a class of your own (nnlight builds only its
own and MONAI's networks from a file unless you trust the module).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nnlight.exchange.model_zip import export_model_zip, install_model_zip
from nnlight.exchange.nnunet import export_to_nnunet
from nnlight.exchange.onnx_model import OPSET, export_onnx
from nnlight.inference.predictor import recorded_networks
from nnlight.model.network import trust_setting
from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.errors import UserError, exit_on_user_error
from nnlight.utils.files import writable_folder_problem
from nnlight.utils.folders import CHECKPOINT_NAMES, ModelFolder
from nnlight.utils.names import model_argument


def _results_default() -> str:
    return os.environ.get("NNLIGHT_RESULTS", "data/results")  # as configs/paths/default.yaml


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnlight-model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="nnlight-model export|export-nnunet dataset=<Dataset> model=<configuration>/<experiment>|best "
              "output=<file or folder> [format=zip|onnx checkpoint=final folds=0,1 results=<folder>]\n"
              "       nnlight-model install file=<model.zip> [results=<folder>]")
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="one .zip with everything inference needs")
    nnunet = commands.add_parser("export-nnunet", help="nnU-Net's trained model folder layout (nnUNetv2_predict)")
    for command in (export, nnunet):
        command.add_argument("--dataset", required=True, help="DatasetXXX_Name")
        command.add_argument("--model", required=True,
                             help="<configuration>/<experiment> under the dataset's results" +
                                  (", or best (what nnlight-evaluate selected)" if command is export else ""))
        command.add_argument("--output", required=True, type=Path,
                             help="the .zip (or, with format=onnx, the folder) to write" if command is export
                             else "nnU-Net results root to write into")
        command.add_argument("--results", default=_results_default(), type=Path,
                             help="nnlight results root (default: $NNLIGHT_RESULTS or data/results)")
        command.add_argument("--checkpoint", default="final", choices=CHECKPOINT_NAMES)
        command.add_argument("--folds", nargs="*", default=None, help="default: every trained fold")
    export.add_argument("--format", default="zip", choices=("zip", "onnx"),
                        help="zip: an nnlight model file; onnx: a folder of ONNX networks + spec.json, runnable with "
                             "onnxruntime alone (needs nnlight[onnx])")
    install = commands.add_parser("install", help="unpack a model .zip under the results folder")
    install.add_argument("file", type=Path)
    install.add_argument("--results", default=_results_default(), type=Path,
                         help="results root (default: $NNLIGHT_RESULTS or data/results)")
    for command in (export, nnunet, install):
        command.add_argument("--trusted-networks", nargs="*", default=[],
                             help="modules whose network classes the model may name besides nnlight's list, e.g. "
                                  "[my_lab.nets] (checked by building each fold's network)")
    return parser


def _check_written_folder(args: argparse.Namespace) -> None:
    """The folder a command writes into is probed before any work (a read-only mount, /proc, no permission)."""
    if args.command == "install":
        key, folder = "results", args.results
    else:
        key = "output"
        folder = args.output.parent if args.command == "export" and args.format == "zip" else args.output
    problem = writable_folder_problem(folder)
    if problem:
        raise UserError(f"{key}={getattr(args, key)}: {problem}; choose a folder you can write to")


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(key_value_arguments(parser, argv))
    with exit_on_user_error():
        _check_written_folder(args)
        if args.command == "export" and args.format == "onnx":
            spec = export_onnx(args.results, args.dataset, args.model, args.output, args.checkpoint, args.folds,
                               args.trusted_networks)
            print(f"Wrote {args.output}: {', '.join(spec['networks'])} + spec.json (ONNX opset {OPSET})\n"
                  f"  predict: nnlight-predict model={args.output} input=<images> output=<folder>, or with "
                  "onnxruntime alone (README: Models that run without nnlight)")
        elif args.command == "export":
            if args.output.suffix != ".zip":
                raise UserError(f"output={args.output}: name the model file <name>.zip")
            manifest = export_model_zip(args.results, args.dataset, args.model, args.output, args.checkpoint,
                                        args.folds)
            members = ", ".join(f"{m.model} (folds {', '.join(m.folds)})" for m in manifest.members)
            trust = trust_setting(recorded_networks(args.results / args.dataset / m.model for m in manifest.folders))
            print(f"Wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB): {members}\n"
                  f"  predict: nnlight-predict model={args.output} input=<images> output=<folder>{trust}")
        elif args.command == "export-nnunet":
            target = export_to_nnunet(ModelFolder(args.results / args.dataset / args.model), args.output,
                                      args.checkpoint, args.folds, args.trusted_networks)
            print(f"Wrote nnU-Net model folder {target}\n  predict with nnU-Net: nnUNetv2_predict -i <images> -o "
                  f"<folder> -d {args.dataset} -c {target.name.rsplit('__', 1)[-1]} "
                  f"-tr {target.name.split('__')[0]} -p {target.name.split('__')[1]} (nnUNet_results={args.output})")
        else:
            manifest, folders, is_best = install_model_zip(args.file, args.results, args.trusted_networks)
            model = model_argument(folders[0]) if len(folders) == 1 else \
                f"model=best dataset={manifest.dataset}" if is_best else f"model={args.file}"
            trust = trust_setting(recorded_networks(args.results / manifest.dataset / m.model
                                                    for m in manifest.folders))
            print(f"Installed {args.file} into {args.results / manifest.dataset}\n  predict: nnlight-predict "
                  f"{model} input=<images> output=<folder>{trust}")


if __name__ == "__main__":
    main()
