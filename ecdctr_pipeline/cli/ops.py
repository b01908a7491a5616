"""The operator's verbs on a running deployment: the store's leases (``leases list|break``) and
an audited forced blessing (``promote``)."""

from __future__ import annotations

import argparse

from ecdctr_pipeline.cli.context import emit as _emit
from ecdctr_pipeline.cli.context import log
from ecdctr_pipeline.cli.context import store_of as _store
from ecdctr_pipeline.core.errors import EcdctrError


def cmd_leases_list(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.core.report import markdown_table
    from ecdctr_pipeline.data.leases import list_leases

    rows = list_leases(_store(args))
    _emit(args, rows, markdown_table(("lease", "holder", "host", "pid", "renewed", "expires", "state"),
                                     [tuple(r.values()) for r in rows]) if rows else "(no leases: nothing is being written)")
    return 0


def cmd_leases_break(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.data.leases import break_lease

    lease = break_lease(_store(args), args.key, force=args.force)
    log.warning("broke lease %s (%s, held by %s)", args.key, lease["state"], lease["owner"])
    _emit(args, lease, f"broke lease {args.key} ({lease['state']}, held by {lease['owner']})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """An operator's forced blessing of a day's A-CTR model the gate did not bless, audited in its
    manifest (who, why, when, and the gate's own verdict); ``export`` then serves it."""
    import datetime as dt

    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.core.calendar import parse_date
    from ecdctr_pipeline.data import artifacts

    day = parse_date(args.as_of, what="--as-of")
    by, reason = args.by.strip(), args.reason.strip()
    if not by or not reason:
        raise EcdctrError("promote: --by and --reason must not be empty: a forced blessing is audited")

    def update(m: artifacts.Manifest) -> artifacts.Manifest:
        if m.blessing is None:
            raise EcdctrError(f"promote: A-CTR model {day} has no blessing record; nothing to promote")
        if m.blessed:
            raise EcdctrError(f"promote: A-CTR model {day} is already blessed ({m.blessing.describe()})")
        at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        promoted = {"by": by, "reason": reason, "at": at, "verdict": m.blessing.describe()}
        return m.model_copy(update={"blessing": m.blessing.model_copy(update={"blessed": True, "promoted": promoted})})

    m = artifacts.amend_manifest(_store(args), paths.actr_model(day), update, owner=f"promote A-CTR {day}")
    log.warning("A-CTR %s promoted by %s: %s", day, by, reason)
    _emit(args, {"actr_model": day.isoformat(), "blessed": True, "blessing": m.blessing.model_dump()},
          f"A-CTR {day}: {m.blessing.describe()}; `ecdctr export --as-of {day}` serves it")
    return 0


def add_ops_verbs(sub, common: argparse.ArgumentParser, js: argparse.ArgumentParser) -> None:
    ls = sub.add_parser("leases", help="the store's leases (one writer per Delta table or artifact)", parents=[common])
    ls_sub = ls.add_subparsers(dest="leases_command", required=True, metavar="ACTION")
    ls_sub.add_parser("list", help="every lease: holder, host, pid, expiry, live/expired/dead",
                      parents=[common, js]).set_defaults(func=cmd_leases_list)
    lb = ls_sub.add_parser("break", help="remove a lease whose holder is gone (a live one only with --force)",
                           parents=[common, js])
    lb.add_argument("key", metavar="KEY", help="the lease's key, as `ecdctr leases list` prints it (leases/…)")
    lb.add_argument("--force", action="store_true", help="break a live lease (its holder may still be writing)")
    lb.set_defaults(func=cmd_leases_break)

    pr = sub.add_parser("promote", help="bless a day's A-CTR model its gate rejected (audited in its manifest)",
                        parents=[common, js])
    pr.add_argument("--as-of", required=True, metavar="DATE", help="the A-CTR day")
    pr.add_argument("--by", required=True, metavar="NAME", help="who decides (recorded)")
    pr.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded)")
    pr.set_defaults(func=cmd_promote)
