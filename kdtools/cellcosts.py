"""What a report cell cost: its chain of jobs, each measured (run.json `cost`) or estimated
(`kdtools plan`'s estimate), plus its shares of the generations it trained on.

    ledger = Ledger(world, world_dir)
    ledger.register(parts)            # every chain first: shares depend on every user of a generation
    cost = ledger.cost(parts)         # Cost: seconds, device, estimated?, the breakdown, or why not

A Part is one job of a chain: the run.json folder(s) it writes and the workflow rule (with its
wildcards) that makes it. The chains themselves are kdtools.receipts' business. A cell's cost
counts from the start it shares with the cells it is compared with: the base model on general
data (SFT; GKD = the SFT it continues + GKD), the student's general SFT on a domain task (not
counted on either side). The teachers' own training is reported beside it, not added.

Measured: run.json `cost.device_seconds` (kdtools.costs). A run.json from before costs were
recorded, or a missing one (a run done elsewhere), is estimated by kdtools.estimate with the
world's plan settings (H100 for the paper world, the CPU model for toy worlds) and marked. Shares:
every run.json under `models/` lists the generations it trained on (`cost.uses`), a missing run
that would train on one is added with the rows it would use, and each generation's cost is
divided among them row by row (kdtools.costs.divide).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kdtools import costs, manifest, paths
from kdtools.errors import KdError
from kdtools.world import World


@dataclass(frozen=True)
class Part:
    label: str                 # e.g. "gkd 3b general/10k"
    folders: tuple             # run.json folder(s) it writes (2-Stage: stage 1 and stage 2)
    rule: str                  # the workflow rule that makes it (kdtools.estimate), for an estimate
    wc: tuple                  # its wildcards, as sorted (key, value) pairs
    uses: tuple = ()           # generations it would train on if estimated: (folder, rule, wc, rows)


@dataclass
class Cost:
    seconds: float | None = None      # device-seconds (GPU-s, or CPU core-s)
    device: str | None = None         # 'gpu' or 'cpu'
    estimated: bool = False           # some part comes from the cost model
    parts: list = field(default_factory=list)   # the breakdown: {label, seconds, source}
    why: str | None = None            # why there is no cost

    @property
    def hours(self) -> float | None:
        return None if self.seconds is None else self.seconds / 3600

    @property
    def unit(self) -> str:
        return {"gpu": "GPU-h", "cpu": "CPU core-h"}.get(self.device or "", "device-h")


class Ledger:
    """The runs and shared generations of one world folder, for costing chains of Parts."""

    def __init__(self, world: World, world_dir: Path, settings=None):
        self.world, self.world_dir = world, Path(world_dir)
        self.settings = settings
        self.runs = {p.parent.resolve(): manifest.read_json(p) or {} for p in self._manifests()}
        self.users: dict[str, dict[str, int]] = {}     # generation -> {user: rows it uses}
        self.recorded: dict[str, dict] = {}            # generation -> a use entry naming it
        self.virtual: dict[str, tuple] = {}            # generation -> (rule, wc) to estimate it
        for folder, run in self.runs.items():
            for u in (run.get("cost") or {}).get("uses") or ():
                self.users.setdefault(u["generation"], {})[str(folder)] = int(u.get("rows_used") or 0)
                self.recorded.setdefault(u["generation"], u)
        self._shares: dict[str, dict] | None = None
        self.generations: dict[str, dict] = {}         # generation -> its cost and how it was divided

    def _manifests(self):
        root = self.world_dir / "models"
        if not root.is_dir():
            return []
        return [p for p in sorted(root.glob(f"**/{paths.MANIFEST}"))
                if not any(part.startswith(".") for part in p.relative_to(root).parts)]

    def rel(self, folder: Path) -> str:
        try:
            return str(Path(folder).resolve().relative_to(self.world_dir.resolve()))
        except ValueError:
            return str(folder)

    def run(self, folder: Path) -> dict | None:
        return self.runs.get(Path(folder).resolve())

    # ---------------------------------------------------------------- registration and shares
    def register(self, parts) -> None:
        """Add the generations a missing run would train on (measured runs are known already)."""
        for part in parts:
            if all((self.run(f) or {}).get("cost") for f in part.folders):
                continue
            for folder, rule, wc, rows in part.uses:
                gen = self.rel(folder)
                self.users.setdefault(gen, {})[str(Path(part.folders[-1]).resolve())] = rows
                self.virtual.setdefault(gen, (rule, wc))
        self._shares = None

    def shares(self) -> dict[str, dict]:
        """generation -> {user: device-seconds}, computed once every user is registered."""
        if self._shares is None:
            self._shares = {}
            for gen, users in self.users.items():
                info = self.generation(gen)
                self.generations[gen] = info
                if info.get("seconds") is None or not info.get("rows"):
                    continue
                share, rest = costs.divide(info["seconds"], info["rows"], users)
                self._shares[gen] = share
                info |= {"users": len(users), "unused_rows_seconds": round(rest, 3),
                         "shares": {self.rel(Path(u)): round(s, 3) for u, s in share.items()}}
        return self._shares

    def generation(self, gen: str) -> dict:
        """A generation's cost: its run.json now, else what its users recorded, else the estimate."""
        done = manifest.read_json(self.world_dir / gen / paths.MANIFEST) or {}
        cost, seen = done.get("cost") or {}, self.recorded.get(gen) or {}
        rows = costs.generated_rows(done) or seen.get("rows")
        if cost.get("device_seconds") is not None:
            return {"seconds": cost["device_seconds"], "device": cost.get("device"), "rows": rows, "source": "measured"}
        if seen.get("device_seconds") is not None:
            return {"seconds": seen["device_seconds"], "device": seen.get("device"), "rows": rows,
                    "source": "measured (as recorded by its users)"}
        if gen in self.virtual:
            rule, wc = self.virtual[gen]
            est = self.estimate(rule, dict(wc))
            rows = rows or dict(wc).get("n")
            return {"seconds": est.get("seconds"), "device": est.get("device"), "rows": rows,
                    "source": "estimate", "why": est.get("why")}
        return {"seconds": None, "rows": rows, "source": None,
                "why": f"{gen}: its run.json records no cost and it cannot be estimated"}

    # ---------------------------------------------------------------- costs
    def estimate(self, rule: str, wc: dict) -> dict:
        from kdtools.estimate import estimate, plan_settings

        try:
            if self.settings is None:
                self.settings = plan_settings("cpu" if self.world.toy else "h100")
            est = estimate(self.world, rule, wc, self.settings)
        except (KdError, KeyError, OSError, ValueError) as exc:
            return {"seconds": None, "why": f"no estimate for {rule} {wc}: {exc}"}
        return {"seconds": est.gpu_hours * 3600, "device": "cpu" if self.settings.gpu == "cpu" else "gpu"}

    def part_cost(self, part: Part) -> dict:
        """{seconds, device, source, label} of one part (measured, or estimated as a whole)."""
        runs = [self.run(f) for f in part.folders]
        if all(r and (r.get("cost") or {}).get("device_seconds") is not None for r in runs):
            kinds = {r["cost"].get("device") for r in runs}
            return {"label": part.label, "seconds": sum(r["cost"]["device_seconds"] for r in runs),
                    "device": kinds.pop() if len(kinds) == 1 else None, "source": "measured"}
        est = self.estimate(part.rule, dict(part.wc))
        note = "estimate (run.json records no cost)" if all(runs) else "estimate (no run.json)"
        return {"label": part.label, **est, "source": note}

    def cost(self, parts) -> Cost:
        """The chain's cost: its parts plus their shares of shared generations. A part or share
        without a cost, or a chain mixing GPU and CPU runs, gives no total (why says so)."""
        shares = self.shares()
        out = Cost()
        for part in parts:
            got = self.part_cost(part)
            out.parts.append(got)
            for folder in part.folders:
                key = str(Path(folder).resolve())
                for gen, users in self.users.items():
                    if key in users:
                        info = self.generations.get(gen, {})
                        s = shares.get(gen, {}).get(key)
                        out.parts.append({"label": f"share of {gen}", "seconds": s, "device": info.get("device"),
                                          "source": f"{info.get('source')} generation, divided among "
                                                    f"{len(users)} run(s) by rows used",
                                          "why": info.get("why")})
        missing = [p for p in out.parts if p.get("seconds") is None]
        kinds = {p.get("device") for p in out.parts}
        out.estimated = any(str(p.get("source", "")).startswith("estimate") for p in out.parts)
        if missing:
            out.why = "; ".join(p.get("why") or f"{p['label']}: no cost" for p in missing)
        elif len(kinds) != 1 or None in kinds:
            out.why = "mixes runs on different devices (GPU and CPU): no single unit"
        else:
            out.seconds, out.device = sum(p["seconds"] for p in out.parts), kinds.pop()
        return out
