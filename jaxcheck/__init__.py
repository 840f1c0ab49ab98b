"""jaxcheck: fast, located gradient checks for JAX."""

from ._check import assert_grad as assert_grad
from ._check import check_grad as check_grad
from ._check_grads import check_grads as check_grads
from ._compilation_cache import CompilationCache as CompilationCache
from ._compilation_cache import (
    enable_compilation_cache as enable_compilation_cache,
)
from ._custom_rules import assert_custom_jvp as assert_custom_jvp
from ._custom_rules import assert_custom_vjp as assert_custom_vjp
from ._custom_rules import check_custom_jvp as check_custom_jvp
from ._custom_rules import check_custom_vjp as check_custom_vjp
from ._errors import BatchingFallbackWarning as BatchingFallbackWarning
from ._errors import GradCheckError as GradCheckError
from ._hessian import assert_hessian as assert_hessian
from ._hessian import check_hessian as check_hessian
from ._jacobian import assert_jacobian as assert_jacobian
from ._jacobian import check_jacobian as check_jacobian
from ._jacobian_report import JacobianReport as JacobianReport
from ._numerical_grad import numerical_grad as numerical_grad
from ._report import EntryReport as EntryReport
from ._report import GradCheckReport as GradCheckReport
from ._report import LeafSummary as LeafSummary
from ._rule_report import RuleReport as RuleReport
from ._rule_report import RuleStep as RuleStep
from ._taylor import assert_taylor as assert_taylor
from ._taylor import taylor_test as taylor_test
from ._taylor_report import TaylorDirection as TaylorDirection
from ._taylor_report import TaylorReport as TaylorReport
from ._vjp_jvp import assert_jvp as assert_jvp
from ._vjp_jvp import assert_vjp as assert_vjp
from ._vjp_jvp import check_jvp as check_jvp
from ._vjp_jvp import check_vjp as check_vjp

__version__ = "0.1.0"
