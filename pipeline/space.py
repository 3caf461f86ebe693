"""Search spaces: their schema (the pydantic models a search_spaces/*.yaml file is read
into), Optuna distributions and samplers, and constraints between parameters.

Constraints are small boolean expressions (`M <= N`, `T + N >= M`) evaluated with a
whitelist over Python's `ast`, never `eval`: a task file is data, not code.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import TaskError
from pipeline.workloads.base import Params

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- search spaces --------------------------------------------------------------------

class Grid(_Strict):
    type: Literal["grid"]
    values: list[Any] = Field(min_length=1, description="every value is tried under the grid sampler")


class Choice(_Strict):
    type: Literal["choice"]
    values: list[Any] = Field(min_length=1, description="categorical values")


class _Range(_Strict):
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self):
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite, got [{self.low}, {self.high}]")
        if self.low >= self.high:
            raise ValueError(f"empty or inverted range: low={self.low} must be < high={self.high}")
        return self


class Uniform(_Range):
    type: Literal["uniform"]


class LogUniform(_Range):
    type: Literal["loguniform"]

    @model_validator(mode="after")
    def _positive(self):
        if self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}")
        return self


class RandInt(_Strict):
    type: Literal["randint"]
    low: int
    high: int = Field(description="inclusive")

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"inverted range: low={self.low} > high={self.high}")
        return self


Dimension = Grid | Choice | Uniform | LogUniform | RandInt


class Constraint(_Strict):
    expr: str = Field(description="a boolean expression over parameter names, e.g. 'M <= N'")
    reason: str = Field("", description="shown when a sampled point breaks it")


class SearchSpace(_Strict):
    parameters: dict[str, Dimension] = Field(default_factory=dict)
    constraints: list[Constraint] = Field(default_factory=list)


DIMENSION_TYPES: dict[str, type[BaseModel]] = {
    "grid": Grid, "choice": Choice, "uniform": Uniform, "loguniform": LogUniform, "randint": RandInt,
}


# --- Optuna ----------------------------------------------------------------------------

_PRIMITIVE = (type(None), bool, int, float, str)


def to_optuna(space: SearchSpace, source: str = "search space") -> dict[str, optuna.distributions.BaseDistribution]:
    dists: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, dim in space.parameters.items():
        if dim.type in ("grid", "choice"):
            bad = [v for v in dim.values if not isinstance(v, _PRIMITIVE)]
            if bad:
                raise TaskError(f"{source}: parameters.{name}.values: only numbers, strings, booleans "
                                f"and null can be searched, got {bad[0]!r}")
            dists[name] = optuna.distributions.CategoricalDistribution(list(dim.values))
        elif dim.type == "uniform":
            dists[name] = optuna.distributions.FloatDistribution(dim.low, dim.high)
        elif dim.type == "loguniform":
            dists[name] = optuna.distributions.FloatDistribution(dim.low, dim.high, log=True)
        elif dim.type == "randint":
            dists[name] = optuna.distributions.IntDistribution(dim.low, dim.high)
    return dists


def grid_size(space: SearchSpace) -> int:
    return math.prod(len(d.values) for d in space.parameters.values())


def make_sampler(kind: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler({n: list(d.values) for n, d in space.parameters.items()}, seed=seed)
    raise ValueError(f"unknown sampler {kind!r}")


# --- constraints ------------------------------------------------------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCS = {"min": min, "max": max, "abs": abs}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _names(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = _dotted(node)
            if name and name not in _FUNCS:
                out.add(name)
    return {n for n in out if not any(o != n and o.startswith(n + ".") for o in out)}


def _eval(node: ast.AST, env: dict[str, Any]) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, env)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool, str)):
        return node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = _dotted(node)
        if name not in env:
            raise KeyError(name)
        return env[name]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        value = _eval(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else not value
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, env) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comparator in zip(node.ops, node.comparators):
            if type(op) not in _CMPOPS:
                raise ValueError(f"operator {type(op).__name__} is not allowed")
            right = _eval(comparator, env)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*[_eval(a, env) for a in node.args])
    raise ValueError(f"{ast.dump(node)[:60]} is not allowed in a constraint")


def _parse(expr: str, where: str) -> ast.Expression:
    try:
        return ast.parse(expr, mode="eval")
    except SyntaxError:
        raise TaskError(f"{where}: not a valid expression: {expr!r}") from None


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        out[prefix + key] = value
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
    return out


def check_constraint_names(space: SearchSpace, params: Params, source: str) -> None:
    known = set(_flatten(params.model_dump())) | set(space.parameters)
    for i, constraint in enumerate(space.constraints):
        where = f"{source}: constraints.{i}.expr"
        tree = _parse(constraint.expr, where)
        unknown = sorted(_names(tree) - known)
        if unknown:
            raise TaskError(f"{where}: unknown name {unknown[0]!r} in {constraint.expr!r}")
        try:
            _eval(tree, {n: 1 for n in known})  # shape check: only whitelisted nodes
        except (ValueError, TypeError) as err:
            raise TaskError(f"{where}: {err}") from None
        except (ZeroDivisionError, KeyError):
            pass


def violated(space: SearchSpace, params: Params) -> str | None:
    """The reason of the first constraint this trial's params break, or None."""
    env = _flatten(params.model_dump())
    for constraint in space.constraints:
        try:
            ok = bool(_eval(ast.parse(constraint.expr, mode="eval"), env))
        except ZeroDivisionError:
            ok = False
        if not ok:
            return constraint.reason or f"constraint {constraint.expr!r} does not hold"
    return None
