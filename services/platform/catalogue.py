"""The error catalogue, read from the code: ``python -m services.platform.catalogue`` writes
docs/errors.md (``make docs``).

Walks every module of services/ with ``ast`` for the refusals it raises: ``DomainError(...)``,
``invalid(...)``, ``Violations.raise_if_any(...)`` and every helper that builds one of those from
its own parameters (``wrong_state(card, "unlock", "NOT_FORMALLY_LOST", "A14.3")``). Reasons,
kinds and rules are resolved where they are literal, module constants (also through an imported
module: ``financial.PASSWORD_RULE``), the values of a constant dict, or a local assignment.
A reason passed on from elsewhere (a stored refusal replayed, a peer's refusal) is not a site.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from services.platform.errors import Kind
from services.platform.grpc_errors import CODES, RETRYABLE

ROOT = Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "docs" / "errors.md"
FIELDS = ("reason", "kind", "rule")

# What a caller does about a refusal, by the gRPC code it arrives with.
ADVICE: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.INVALID_ARGUMENT: "Fix the fields named in `BadRequest.field_violations`, "
    "then send a new request with a new request id.",
    grpc.StatusCode.FAILED_PRECONDITION: "Final for this card or person as they stand: show the "
    "refusal, or do the step the rule requires first (query the status), then send a new request.",
    grpc.StatusCode.NOT_FOUND: "Check the identifier; it is unknown to this service.",
    grpc.StatusCode.ALREADY_EXISTS: "Final: what the request would create already exists; "
    "query it instead.",
    grpc.StatusCode.PERMISSION_DENIED: "Final for this credential or channel: use the channel "
    "and client the regulation allows (README, Integrators; docs/guides).",
    grpc.StatusCode.UNAUTHENTICATED: "Obtain a fresh, valid credential from your issuer, then "
    "send the same request again.",
    grpc.StatusCode.ABORTED: "Retry with the same request id after a short back-off.",
    grpc.StatusCode.UNAVAILABLE: "Retry with the same request id with back-off.",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "Send less at once (split the batch) or slow down.",
}


@dataclass(frozen=True)
class Param:
    """A field of a refusal that a helper takes from its own parameter."""

    name: str
    index: int
    default: frozenset[str]


Value = frozenset[str] | Param  # the known values of a field ("" when absent), or a parameter


@dataclass(frozen=True)
class Factory:
    """Something whose call makes a refusal: how it fills each field from its arguments."""

    params: tuple[str, ...]
    fields: dict[str, Value]


@dataclass
class Entry:
    """Everything the code says about one reason."""

    kinds: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    messages: set[str] = field(default_factory=set)
    sites: set[str] = field(default_factory=set)


def _fixed(*values: str) -> frozenset[str]:
    return frozenset(values)


BASE: dict[str, Factory] = {
    "DomainError": Factory(
        ("reason", "message", "kind", "rule"),
        {
            "reason": Param("reason", 0, _fixed()),
            "kind": Param("kind", 2, _fixed(Kind.PRECONDITION.value)),
            "rule": Param("rule", 3, _fixed("")),
        },
    ),
    "invalid": Factory(
        ("reason", "violations", "rule"),
        {
            "reason": Param("reason", 0, _fixed()),
            "kind": _fixed(Kind.INVALID.value),
            "rule": Param("rule", 2, _fixed("")),
        },
    ),
    "raise_if_any": Factory(
        ("reason", "rule"),
        {
            "reason": Param("reason", 0, _fixed("INVALID_REQUEST")),
            "kind": _fixed(Kind.INVALID.value),
            "rule": Param("rule", 1, _fixed("")),
        },
    ),
}


class Module:
    """One source file: its constants and the modules it imports by name."""

    def __init__(self, path: Path) -> None:
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.constants: dict[str, frozenset[str]] = {}
        self.imports: dict[str, str] = {}
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets = [node.target]
            value = getattr(node, "value", None)
            for target in targets:
                if isinstance(target, ast.Name) and value is not None:
                    found = _literals(value)
                    if found:
                        self.constants[target.id] = found


def _literals(node: ast.expr) -> frozenset[str]:
    """The strings a constant expression can be: a literal, a dict's values, a conditional."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return _fixed(node.value)
    if isinstance(node, ast.Dict):
        return frozenset().union(*(_literals(v) for v in node.values))
    if isinstance(node, ast.IfExp):
        return _literals(node.body) | _literals(node.orelse)
    return _fixed()


class Catalogue:
    """Every refusal site of services/, read in two passes: helpers first, then sites."""

    def __init__(self, root: Path = ROOT) -> None:
        self.root = root
        self.modules = {
            ".".join(p.relative_to(root).with_suffix("").parts): Module(p)
            for p in sorted((root / "services").rglob("*.py"))
        }
        self.factories = dict(BASE)
        self.entries: dict[str, Entry] = {}
        while self._find_helpers():
            pass
        for name, module in self.modules.items():
            for function, call, spec in self._calls(module):
                self._record(name, module, function, call, spec)

    # --- resolving expressions ---------------------------------------------------------------

    def _resolve(
        self, node: ast.expr, module: Module, scope: dict[str, Value], params: tuple[str, ...]
    ) -> Value:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return _fixed(node.value)
        if isinstance(node, ast.Name):
            if node.id in scope:
                return scope[node.id]
            if node.id in params:
                return Param(node.id, params.index(node.id), _fixed())
            if node.id in module.constants:
                return module.constants[node.id]
            return self._imported(module, node.id)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "Kind":
                return _fixed(node.attr)
            if isinstance(node.value, ast.Name) and node.value.id in module.imports:
                other = self.modules.get(module.imports[node.value.id])
                if other is not None:
                    return other.constants.get(node.attr, _fixed())
            return _fixed()
        if isinstance(node, ast.Subscript):
            return self._resolve(node.value, module, scope, params)
        if isinstance(node, ast.IfExp):
            body = self._resolve(node.body, module, scope, params)
            orelse = self._resolve(node.orelse, module, scope, params)
            if isinstance(body, frozenset) and isinstance(orelse, frozenset):
                return body | orelse
        return _fixed()

    def _imported(self, module: Module, name: str) -> frozenset[str]:
        """A constant imported by name (``from services.bank.domain.account import RULE``)."""
        qualified = module.imports.get(name, "")
        other = self.modules.get(qualified.rpartition(".")[0])
        return other.constants.get(name, _fixed()) if other is not None else _fixed()

    def _locals(self, function: ast.FunctionDef | None, module: Module) -> dict[str, Value]:
        """Strings a function's local names are bound to (``reason, rule = "X", "A5.1"``)."""
        scope: dict[str, frozenset[str]] = {}
        if function is None:
            return {}
        for node in ast.walk(function):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                pairs: list[tuple[ast.expr, ast.expr]] = [(target, node.value)]
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs = list(zip(target.elts, node.value.elts, strict=False))
                for name, value in pairs:
                    if isinstance(name, ast.Name):
                        found = self._resolve(value, module, {}, ())
                        if isinstance(found, frozenset) and found:
                            scope[name.id] = scope.get(name.id, _fixed()) | found
        return dict(scope)

    # --- walking -----------------------------------------------------------------------------

    def _calls(self, module: Module) -> Iterator[tuple[ast.FunctionDef | None, ast.Call, Factory]]:
        def visit(
            node: ast.AST, function: ast.FunctionDef | None
        ) -> Iterator[tuple[ast.FunctionDef | None, ast.Call, Factory]]:
            for child in ast.iter_child_nodes(node):
                inner = child if isinstance(child, ast.FunctionDef) else function
                if isinstance(child, ast.Call):
                    callee = child.func
                    name = (
                        callee.id
                        if isinstance(callee, ast.Name)
                        else callee.attr
                        if isinstance(callee, ast.Attribute)
                        else ""
                    )
                    if name in self.factories and (inner is None or inner.name != name):
                        yield inner, child, self.factories[name]
                yield from visit(child, inner)

        yield from visit(module.tree, None)

    @staticmethod
    def _params(function: ast.FunctionDef | None) -> tuple[str, ...]:
        if function is None:
            return ()
        names = [a.arg for a in function.args.posonlyargs + function.args.args]
        if names and names[0] in ("self", "cls"):
            names = names[1:]
        return (*names, *(a.arg for a in function.args.kwonlyargs))

    def _fields(
        self, module: Module, function: ast.FunctionDef | None, call: ast.Call, spec: Factory
    ) -> dict[str, Value]:
        """Each field of the refusal a call makes, in terms of the enclosing function."""
        params = self._params(function)
        scope = self._locals(function, module)
        keywords = {k.arg: k.value for k in call.keywords if k.arg}
        result: dict[str, Value] = {}
        for name in FIELDS:
            how = spec.fields[name]
            if isinstance(how, frozenset):
                result[name] = how
                continue
            node = keywords.get(how.name)
            if node is None and how.index < len(call.args):
                node = call.args[how.index]
                if isinstance(node, ast.Starred):
                    node = None
            result[name] = (
                how.default if node is None else self._resolve(node, module, scope, params)
            )
        return result

    def _find_helpers(self) -> bool:
        """Add every function that makes a refusal from its own parameters; True if any new."""
        added = False
        for module in self.modules.values():
            for function, call, spec in self._calls(module):
                if function is None or function.name in self.factories:
                    continue
                fields = self._fields(module, function, call, spec)
                if not any(isinstance(v, Param) for v in fields.values()):
                    continue
                defaults = self._defaults(function, module)
                self.factories[function.name] = Factory(
                    self._params(function),
                    {
                        k: Param(v.name, v.index, defaults.get(v.name, _fixed()))
                        if isinstance(v, Param)
                        else v
                        for k, v in fields.items()
                    },
                )
                added = True
        return added

    def _defaults(self, function: ast.FunctionDef, module: Module) -> dict[str, frozenset[str]]:
        args = function.args
        positional = args.posonlyargs + args.args
        defaulted = positional[len(positional) - len(args.defaults) :]
        pairs = list(zip(defaulted, args.defaults, strict=True))
        keywords = zip(args.kwonlyargs, args.kw_defaults, strict=True)
        pairs += [(a, d) for a, d in keywords if d is not None]
        found: dict[str, frozenset[str]] = {}
        for arg, default in pairs:
            value = self._resolve(default, module, {}, ())
            if isinstance(value, frozenset):
                found[arg.arg] = value
        return found

    def _record(
        self,
        name: str,
        module: Module,
        function: ast.FunctionDef | None,
        call: ast.Call,
        spec: Factory,
    ) -> None:
        fields = self._fields(module, function, call, spec)
        if any(isinstance(v, Param) for v in fields.values()):
            return  # inside a helper: its callers are the sites
        reasons = fields["reason"]
        if not isinstance(reasons, frozenset) or not reasons:
            return  # a reason passed on from elsewhere
        kinds, rules = fields["kind"], fields["rule"]
        message = ""
        if spec is BASE["DomainError"] and len(call.args) > 1:
            message = _text(call.args[1])
        for reason in reasons:
            entry = self.entries.setdefault(reason, Entry())
            entry.kinds |= kinds if isinstance(kinds, frozenset) else set()
            entry.rules |= {r for r in rules if r} if isinstance(rules, frozenset) else set()
            if message:
                entry.messages.add(message)
            entry.sites.add(name)

    # --- rendering ---------------------------------------------------------------------------

    def render(self) -> str:
        lines = [
            "# Error catalogue",
            "",
            "<!-- Generated by `make docs` (python -m services.platform.catalogue) from the code "
            "of services/; do not edit. -->",
            "",
            "Every refusal carries a `google.rpc.Status` with an `ErrorInfo` detail: `reason` is "
            "one of the",
            'codes below, `domain` is `<service>.sscard`, and `metadata["rule"]` is the rule '
            "that decided it",
            "(look it up in [regulation.md](regulation.md)). Malformed requests also carry a "
            "`BadRequest` detail",
            "with one field violation per field. An unexpected failure is `INTERNAL` with a log "
            "reference only.",
            "",
            "One refusal carries no `ErrorInfo`: a request message larger than the service's "
            "request limit",
            "(`SSCARD_MAX_REQUEST_BYTES`, 1 MiB by default) is refused `RESOURCE_EXHAUSTED` by "
            "gRPC itself",
            "(`Received message larger than max`), before any handler runs. Send less in one "
            "message: the bulk",
            "calls (`ImportPersons`, `ApplyBatch`) are client streams that carry a batch in "
            "slices (docs/guides).",
            "",
            "Retry: " + ", ".join(sorted(c.name for c in RETRYABLE)) + ' mean "retry with the '
            'same request id": the',
            "service stores the answer of every mutating call under its request id, so a retry "
            "never books twice.",
            "Every other code is final for that request.",
            "",
            "| reason | gRPC code | rule | meaning | retry | what to do | raised in |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for reason in sorted(self.entries):
            entry = self.entries[reason]
            codes = sorted({CODES[Kind(k)] for k in entry.kinds}, key=lambda c: c.name)
            rules = ", ".join(sorted(entry.rules, key=_rule_order)) or "—"
            retry = "yes" if codes and all(c in RETRYABLE for c in codes) else "no"
            meaning = "; ".join(sorted(entry.messages)) or "see the status message"
            advice = " / ".join(ADVICE[c] for c in codes)
            sites = ", ".join(f"`{s}`" for s in sorted(entry.sites))
            lines.append(
                f"| `{reason}` | {', '.join(c.name for c in codes)} | {rules} | "
                f"{_cell(meaning)} | {retry} | {advice} | {sites} |"
            )
        lines.append("")
        return "\n".join(lines)


def _text(node: ast.expr) -> str:
    """A message as a reader sees it, with ``<...>`` where an f-string fills something in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(str(v.value) if isinstance(v, ast.Constant) else "<…>" for v in node.values)
    return ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rule_order(rule: str) -> tuple[int, ...]:
    if rule.startswith("A") and rule[1:].replace(".", "").isdigit():
        return tuple(int(p) for p in rule[1:].split("."))
    return (10_000,)


def main(argv: list[str] | None = None) -> int:
    """Write docs/errors.md; with ``--check``, fail when it differs from the code."""
    args = sys.argv[1:] if argv is None else argv
    text = Catalogue().render()
    if "--check" in args:
        if OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
