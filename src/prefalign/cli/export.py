"""`prefalign export`: an adapter re-written in the current format, merged into its base weights, or uploaded."""

from __future__ import annotations

COMMAND = "export"


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="re-write an adapter (PEFT's files, model card), merge it into its base weights, or push it to the Hub",
        description=(
            "Without --merge, -o writes the adapter again in the current format (prefalign's files, PEFT's "
            "where PEFT has the method, a model card). With --merge, -o gets a plain transformers model "
            "folder with the adapter folded into the base weights (LoRA, AdaLoRA, IA3, full-ft; other methods "
            "are refused with the reason). --push-to-hub uploads the written folder (or the adapter itself)."
        ),
    )
    p.add_argument("adapter", help="adapter folder written by `prefalign train` (…/adapter)")
    p.add_argument("--output", "-o", help="folder to write (replaced atomically if it exists)")
    p.add_argument("--merge", action="store_true", help="fold the adapter into the base weights (needs -o)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", help="upload to this Hub repository (created if missing)")
    p.add_argument("--private", action="store_true", help="create the Hub repository as private")


def run(args) -> int:
    from ..errors import ConfigError

    if args.merge and not args.output:
        raise ConfigError("--merge writes a model folder: add -o DIR (and --push-to-hub to upload it)")
    if not args.output and not args.push_to_hub:
        raise ConfigError("say where the export goes: -o DIR, --push-to-hub REPO_ID, or both")
    from ..inference import Adapter
    from ..methods.export import push_to_hub
    from ..methods.merge import merge_adapter

    folder = args.adapter
    if args.merge:
        folder = merge_adapter(args.adapter, args.output)
        print(f"wrote the merged model to {folder}")
    elif args.output:
        folder = Adapter.from_pretrained(args.adapter, device="cpu").save_pretrained(args.output)
        print(f"wrote the adapter to {folder}")
    if args.push_to_hub:
        url = push_to_hub(folder, args.push_to_hub, private=args.private)
        print(f"uploaded {folder} to {args.push_to_hub}: {url}")
    return 0
