"""Published cut-offs for sarcopenia (by SMI) and myosteatosis (by mean muscle attenuation).

A flag is True/False when the inputs it needs are known and None otherwise (with the reason in
`missing`): a screening tool must not call a patient normal because the height was not entered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

Flag = Tuple[Optional[bool], List[str]]  # (flag, inputs that were missing)


def prado_2008(smi: float, sex: str, bmi: Optional[float]) -> Flag:
    """Prado 2008 (obese cancer patients): SMI < 52.4 men, < 38.5 women."""
    return smi < (52.4 if sex == "M" else 38.5), []


def martin_2013(smi: float, sex: str, bmi: Optional[float]) -> Flag:
    """Martin 2013: men < 43 if BMI < 25, < 53 if BMI >= 25; women < 41 whatever the BMI."""
    if sex == "F":
        return smi < 41.0, []
    if bmi is None:
        return None, ["bmi"]
    return smi < (43.0 if bmi < 25 else 53.0), []


def jsh_2016(smi: float, sex: str, bmi: Optional[float]) -> Flag:
    """Japan Society of Hepatology 2016 (Asian patients): SMI < 42 men, < 38 women."""
    return smi < (42.0 if sex == "M" else 38.0), []


def martin_2013_myosteatosis(mean_hu: float, bmi: Optional[float]) -> Flag:
    """Martin 2013: mean muscle attenuation < 41 HU if BMI < 25, < 33 HU if BMI >= 25."""
    if bmi is None:
        return None, ["bmi"]
    return mean_hu < (41.0 if bmi < 25 else 33.0), []


@dataclass(frozen=True)
class CutoffSet:
    name: str
    reference: str
    sarcopenia_rule: Callable[[float, str, Optional[float]], Flag]
    myosteatosis_rule: Callable[[float, Optional[float]], Flag] = martin_2013_myosteatosis

    def sarcopenia(self, smi_cm2_m2: Optional[float], sex: Optional[str], bmi: Optional[float]) -> Flag:
        missing = (["height"] if smi_cm2_m2 is None else []) + (["sex"] if sex not in ("M", "F") else [])
        if missing:
            return None, missing
        return self.sarcopenia_rule(smi_cm2_m2, sex, bmi)

    def myosteatosis(self, mean_hu: Optional[float], bmi: Optional[float]) -> Flag:
        if mean_hu is None:
            return None, ["muscle"]
        return self.myosteatosis_rule(mean_hu, bmi)


CUTOFF_SETS: Dict[str, CutoffSet] = {
    "prado2008": CutoffSet("prado2008", "Prado et al., Lancet Oncol 2008; myosteatosis: Martin et al., J Clin Oncol 2013",
                           prado_2008),
    "martin2013": CutoffSet("martin2013", "Martin et al., J Clin Oncol 2013", martin_2013),
    "jsh2016": CutoffSet("jsh2016", "Japan Society of Hepatology 2016; myosteatosis: Martin et al. 2013", jsh_2016),
}
DEFAULT_CUTOFFS = "prado2008"


def cutoff_set(name: str) -> CutoffSet:
    try:
        return CUTOFF_SETS[name]
    except KeyError:
        raise ValueError(f"unknown cut-off set {name!r}; choose from {', '.join(CUTOFF_SETS)}") from None
