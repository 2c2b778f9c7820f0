"""``wovr serve``: serve a policy checkpoint to robots (kept light: heavy imports happen in ``run``)."""

from __future__ import annotations

import argparse

from wovr_core.cli import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from policy_server.config import API_TOKEN_ENV, ServerConfig

    defaults = ServerConfig()
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory to serve first")
    parser.add_argument("--host", default=defaults.host, help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP port; 0 picks a free one")
    parser.add_argument("--checkpoint-root", default=defaults.checkpoint_root,
                        help="directory of checkpoints that may be activated (by name or path inside it)")
    parser.add_argument("--max-queue", type=int, default=defaults.max_queue,
                        help="requests allowed to wait for the model; more are refused with 503")
    parser.add_argument("--request-timeout-s", type=float, default=defaults.request_timeout_s,
                        help="deadline of one request (queue + inference); later -> 503")
    parser.add_argument("--max-request-mb", type=float, default=defaults.max_request_bytes / 2**20,
                        help="largest accepted request/WebSocket message")
    parser.add_argument("--keep-previous", type=int, default=defaults.keep_previous,
                        help="previous checkpoints kept loaded for instant rollback")
    parser.add_argument("--ready-file", default=None,
                        help="write {url, port, pid, checkpoint_id} as JSON here once accepting connections")
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request")
    parser.add_argument("--log-level", default=defaults.log_level,
                        choices=["critical", "error", "warning", "info", "debug"])
    parser.epilog = f"Checkpoint activation/rollback need the token in ${API_TOKEN_ENV}."


def run(args: argparse.Namespace) -> int:
    from policy_server.config import ServerConfig
    from policy_server.server import serve

    config = ServerConfig(host=args.host, port=args.port, max_queue=args.max_queue,
                          request_timeout_s=args.request_timeout_s,
                          max_request_bytes=int(args.max_request_mb * 2**20), keep_previous=args.keep_previous,
                          checkpoint_root=args.checkpoint_root, access_log=args.access_log, log_level=args.log_level)
    config.validate()
    serve(args.checkpoint, config, ready_file=args.ready_file)
    return 0


COMMAND = Command("serve", "serve a policy checkpoint over WebSocket (msgpack) and HTTP", add_arguments, run)
