"""jaxcheck: fast, located gradient checks for JAX."""

from ._base.errors import BatchingFallbackWarning as BatchingFallbackWarning
from ._base.errors import GradCheckError as GradCheckError
from ._base.options import CheckOptions as CheckOptions
from ._base.options import StepOptions as StepOptions
from ._checks.check_grads import check_grads as check_grads
from ._checks.custom_rule import assert_custom_jvp as assert_custom_jvp
from ._checks.custom_rule import assert_custom_vjp as assert_custom_vjp
from ._checks.custom_rule import check_custom_jvp as check_custom_jvp
from ._checks.custom_rule import check_custom_vjp as check_custom_vjp
from ._checks.grad import assert_grad as assert_grad
from ._checks.grad import check_grad as check_grad
from ._checks.hessian import assert_hessian as assert_hessian
from ._checks.hessian import check_hessian as check_hessian
from ._checks.jacobian import assert_jacobian as assert_jacobian
from ._checks.jacobian import check_jacobian as check_jacobian
from ._checks.jvp import assert_jvp as assert_jvp
from ._checks.jvp import check_jvp as check_jvp
from ._checks.numerical_grad import numerical_grad as numerical_grad
from ._checks.taylor import assert_taylor as assert_taylor
from ._checks.taylor import taylor_test as taylor_test
from ._checks.vjp import assert_vjp as assert_vjp
from ._checks.vjp import check_vjp as check_vjp
from ._runtime.compilation_cache import CompilationCache as CompilationCache
from ._runtime.compilation_cache import (
    enable_compilation_cache as enable_compilation_cache,
)
from ._verdict.entries import EntryReport as EntryReport
from ._verdict.entries import LeafSummary as LeafSummary
from ._verdict.jacobian_report import JacobianReport as JacobianReport
from ._verdict.report import GradCheckReport as GradCheckReport
from ._verdict.rule_report import RuleReport as RuleReport
from ._verdict.rule_report import RuleStep as RuleStep
from ._verdict.taylor_report import TaylorDirection as TaylorDirection
from ._verdict.taylor_report import TaylorReport as TaylorReport
from ._version import __version__ as __version__
