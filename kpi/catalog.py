"""Every KPI and time/quantity element the engine stores, as data (ISO 22400-2 terms, KPI-ML-like export).

`status` is the mark from KPI.md: verified (V), secondary (S), unverified (U), proposed (P); it applies to
the formula as written here. Ratios are stored as fractions 0..1 (unit "ratio"), rendered as % by clients.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal
from xml.sax.saxutils import escape

DEFINITION_VERSION = "kpi-catalog/2025.3"
KPIML_NS = "http://www.mesa.org/xml/KPI-ML-V01"

Status = Literal["verified", "secondary", "unverified", "proposed"]
Trend = Literal["higher_is_better", "lower_is_better", "none"]
Kind = Literal["kpi", "element"]


@dataclass(frozen=True)
class KpiDef:
    id: str
    name_en: str
    name_zh: str
    formula: str
    unit: str
    inputs: tuple[str, ...]
    trend: Trend
    source: str
    status: Status
    kind: Kind = "kpi"
    range: tuple[float | None, float | None] = (None, None)
    notes: str = ""
    levels: tuple[str, ...] = field(default=("machine", "line", "area", "site", "plant"))


ISO = "ISO 22400-2:2014"
_R01 = (0.0, 1.0)

CATALOG: tuple[KpiDef, ...] = (
    # ------------------------------------------------------------------ elements (stored; roll-ups sum them)
    KpiDef("calendar_time_s", "Planned operation time", "计划运行时间", "POT = time of the bucket inside the shift calendar",
           "s", ("shift calendar",), "none", f"{ISO} element POT", "verified", "element"),
    KpiDef("planned_stop_time_s", "Planned downtime", "计划停机时间", "state planned_stop inside POT", "s",
           ("state",), "none", f"{ISO} element (POT - PBT)", "verified", "element"),
    KpiDef("planned_busy_time_s", "Planned busy time", "计划占用时间", "PBT = POT - planned downtime", "s",
           ("shift calendar", "state"), "none", f"{ISO} element PBT", "verified", "element"),
    KpiDef("actual_production_time_s", "Actual production time", "实际生产时间", "APT = state running inside PBT", "s",
           ("state",), "higher_is_better", f"{ISO} element APT; state mapping OPC 40001-1 Annex C", "verified", "element"),
    KpiDef("setup_time_s", "Actual unit setup time", "实际准备时间", "ASUT = state setup inside PBT", "s", ("state",),
           "lower_is_better", f"{ISO} element ASUT", "verified", "element"),
    KpiDef("down_time_s", "Actual unit delay time (failures)", "故障停机时间", "ADET = state down inside PBT", "s",
           ("state",), "lower_is_better", f"{ISO} element ADET; down -> ADET mapping", "proposed", "element"),
    KpiDef("idle_time_s", "Actual unit down time (idle)", "空闲时间", "ADOT = state idle inside PBT", "s", ("state",),
           "lower_is_better", f"{ISO} element ADOT; idle -> ADOT mapping", "proposed", "element"),
    KpiDef("no_data_time_s", "Time without state data", "无数据时间", "POT - planned stop - APT - ASUT - ADET - ADOT",
           "s", ("state",), "lower_is_better", "engine data-quality element", "proposed", "element"),
    KpiDef("micro_stop_time_s", "Micro-stop time", "短暂停机时间",
           "idle/down stops between running samples shorter than micro_stop_s, inside POT; counted in APT", "s",
           ("state", "kpi.micro_stop_s"), "lower_is_better",
           "Nakajima six big losses (idling and minor stops) as a performance loss; KPI.md 3.2 mapping", "proposed",
           "element", notes="0 when micro_stop_s = 0 (ISO reading: every stop is ADET/ADOT); part of APT, so "
           "it lowers effectiveness instead of availability; not a failure event"),
    KpiDef("micro_stop_count", "Micro-stops", "短暂停机次数", "micro-stops starting inside POT", "count",
           ("state", "kpi.micro_stop_s"), "lower_is_better", "Nakajima six big losses; KPI.md 3.2 mapping",
           "proposed", "element"),
    KpiDef("reduced_speed_time_s", "Reduced-speed time", "降速运行时间",
           "running time (micro-stops excluded) inside POT in each epoch-aligned 60 s window where "
           "PQ(window) * PRU < reduced_speed_ratio * running time(window); counted in APT", "s",
           ("state", "total_count", "ideal_cycle_time_s", "kpi.reduced_speed_ratio"), "lower_is_better",
           "Nakajima six big losses (reduced speed) as a performance loss; KPI.md 3.2 mapping (part of APT - PRU*PQ)",
           "proposed", "element", notes="0 when reduced_speed_ratio = 0 (off); part of APT, so it lowers "
           "effectiveness, not availability; a counter sampled less often than once a minute makes windows "
           "without a sample look slow"),
    KpiDef("reduced_speed_count", "Reduced-speed periods", "降速次数",
           "runs of consecutive slow 60 s windows, counted in the bucket of their first reduced-speed second",
           "count", ("state", "total_count", "ideal_cycle_time_s", "kpi.reduced_speed_ratio"), "lower_is_better",
           "Nakajima six big losses (reduced speed); KPI.md 3.2 mapping", "proposed", "element"),
    KpiDef("failure_events", "Failure events", "故障次数", "FE = transitions into state down inside POT", "count",
           ("state",), "lower_is_better", "IEC 60050-191 via ISO 22400-2 element FE", "verified", "element"),
    KpiDef("produced_quantity", "Produced quantity", "产出数量", "PQ = increase of the total counter inside POT", "count",
           ("total_count",), "higher_is_better", f"{ISO} element PQ", "verified", "element"),
    KpiDef("good_quantity", "Good quantity", "合格数量", "GQ = increase of good_count, else PQ - SQ - RQ", "count",
           ("good_count", "total_count", "scrap_count", "rework_count"), "higher_is_better",
           f"{ISO} element GQ; PQ = GQ + SQ + RQ is a modelling choice", "proposed", "element"),
    KpiDef("scrap_quantity", "Scrap quantity", "废品数量", "SQ = increase of the scrap counter", "count",
           ("scrap_count",), "lower_is_better", f"{ISO} element SQ", "verified", "element"),
    KpiDef("rework_quantity", "Rework quantity", "返工数量", "RQ = increase of the rework counter", "count",
           ("rework_count",), "lower_is_better", f"{ISO} element RQ", "verified", "element"),
    KpiDef("off_calendar_produced_quantity", "Produced quantity outside planned time", "计划外产出数量",
           "increase of the PQ counters at instants outside POT (not in PQ)", "count", ("total_count", "good_count"),
           "none", "engine data-quality element (counts clipped to POT like time)", "proposed", "element"),
    KpiDef("ideal_production_time_s", "Planned runtime x produced quantity", "理论生产时间", "PRU * PQ", "s",
           ("ideal_cycle_time_s", "total_count"), "none", f"{ISO} elements PRU, PQ", "verified", "element"),
    KpiDef("performance_time_s", "APT of machines with PRU and PQ", "有效性分母时间",
           "APT, only where PRU and PQ are known (keeps the effectiveness roll-up a ratio of matching sums)", "s",
           ("state", "ideal_cycle_time_s", "total_count"), "none", "engine roll-up element", "proposed", "element"),
    KpiDef("networked_machines", "Networked machines", "联网设备数", "production machines with >= 1 good sample", "count",
           ("samples",), "higher_is_better", "engine element for networking_rate", "proposed", "element"),
    KpiDef("production_machines", "Production machines", "生产设备数", "production machines in the register", "count",
           ("assets",), "none", "engine element for networking_rate", "proposed", "element"),
    # ------------------------------------------------------------------ ISO 22400-2 KPIs
    KpiDef("availability", "Availability", "可用率", "APT / PBT", "ratio", ("actual_production_time_s", "planned_busy_time_s"),
           "higher_is_better", f"{ISO} KPI 8 Availability", "verified", range=_R01),
    KpiDef("performance", "Effectiveness (performance)", "有效性", "PRU * PQ / APT", "ratio",
           ("ideal_production_time_s", "performance_time_s"), "higher_is_better", f"{ISO} KPI 9 Effectiveness",
           "verified", range=(0.0, None), notes="may exceed 1 when PRU is set too high; never capped in storage"),
    KpiDef("quality", "Quality ratio", "质量比", "GQ / PQ", "ratio", ("good_quantity", "produced_quantity"),
           "higher_is_better", f"{ISO} KPI 10 Quality ratio", "verified", range=_R01),
    KpiDef("oee", "OEE index", "设备综合效率", "Availability * Effectiveness * Quality ratio", "ratio",
           ("availability", "performance", "quality"), "higher_is_better", f"{ISO} KPI 6 OEE index", "verified",
           range=_R01, notes="roll-ups multiply the aggregated factors (each a ratio of sums)"),
    KpiDef("nee", "NEE index", "净设备效率", "(AUPT / PBT) * Effectiveness * Quality ratio, AUPT = APT + ASUT", "ratio",
           ("actual_production_time_s", "setup_time_s", "planned_busy_time_s", "performance", "quality"),
           "higher_is_better", f"{ISO} KPI 7 NEE index", "verified", range=_R01),
    KpiDef("setup_rate", "Setup rate", "准备率", "ASUT / AUPT", "ratio", ("setup_time_s", "actual_production_time_s"),
           "lower_is_better", f"{ISO} KPI 11 Setup rate", "verified", range=_R01),
    KpiDef("technical_efficiency", "Technical efficiency", "技术效率", "APT / (APT + ADET)", "ratio",
           ("actual_production_time_s", "down_time_s"), "higher_is_better", f"{ISO} KPI 12 Technical efficiency",
           "verified", range=_R01, notes="ADET taken as time in state down (mapping proposed)"),
    KpiDef("scrap_ratio", "Scrap ratio", "废品率", "SQ / PQ", "ratio", ("scrap_quantity", "produced_quantity"),
           "lower_is_better", f"{ISO} KPI 16 Scrap ratio", "verified", range=_R01),
    KpiDef("rework_ratio", "Rework ratio", "返工率", "RQ / PQ", "ratio", ("rework_quantity", "produced_quantity"),
           "lower_is_better", f"{ISO} KPI 17 Rework ratio", "verified", range=_R01),
    KpiDef("first_pass_yield", "First pass yield (from counters)", "一次合格率", "(PQ - SQ - RQ) / PQ", "ratio",
           ("produced_quantity", "scrap_quantity", "rework_quantity"), "higher_is_better",
           f"{ISO} KPI 15 FPY = GP / IP; counter approximation", "proposed", range=_R01,
           notes="ISO counts serialised parts (GP/IP); here parts neither scrapped nor reworked over all produced"),
    KpiDef("mtbf_s", "Mean operating time between failures", "平均故障间隔时间", "sum(TBF) / FE, TBF = APT + ASUT",
           "s", ("actual_production_time_s", "setup_time_s", "failure_events"), "higher_is_better",
           f"{ISO} KPI 31 MTBF", "secondary", range=(0.0, None)),
    KpiDef("mttr_s", "Mean time to restoration", "平均修复时间", "sum(TTR) / FE, TTR = time in state down", "s",
           ("down_time_s", "failure_events"), "lower_is_better", f"{ISO} KPI 33 MTTR", "secondary", range=(0.0, None)),
    # ------------------------------------------------------------------ energy and carbon
    KpiDef("energy_kwh", "Electric energy consumption", "耗电量", "increase of energy meter, or integral of power, inside POT",
           "kWh", ("energy_kwh", "power_kw"), "lower_is_better", "metering (ISO 50006 measured-value EnPI)", "verified",
           "element"),
    KpiDef("off_calendar_energy_kwh", "Energy outside planned time", "计划外耗电量",
           "increase of the energy meter (or integral of power) outside POT (not in energy_kwh)", "kWh",
           ("energy_kwh", "power_kw"), "none", "engine element (energy clipped to POT like time)", "proposed",
           "element"),
    KpiDef("energy_per_unit_kwh", "Specific energy consumption", "单位产品能耗", "E / PQ", "kWh/unit",
           ("energy_kwh", "produced_quantity"), "lower_is_better",
           f"ISO 50006 simple-ratio EnPI; {ISO} KPI 23 (single carrier)", "secondary", range=(0.0, None)),
    KpiDef("energy_per_good_unit_kwh", "Energy per good unit", "单位合格品能耗", "E / GQ", "kWh/unit",
           ("energy_kwh", "good_quantity"), "lower_is_better", "ISO 50006 simple-ratio EnPI", "verified",
           range=(0.0, None)),
    KpiDef("comprehensive_energy_per_unit_kgce", "Unit comprehensive energy consumption (electricity)", "单位产品综合能耗",
           "E * 0.1229 kgce/kWh / PQ", "kgce/unit", ("energy_kwh", "produced_quantity"), "lower_is_better",
           "GB/T 2589-2020 conversion factor", "secondary", range=(0.0, None)),
    KpiDef("co2_kg", "Scope 2 emissions (location-based)", "二氧化碳排放量", "E * EF", "kg",
           ("energy_kwh", "plant.emission_factor_kg_per_kwh"), "lower_is_better", "GHG Protocol Scope 2 Guidance",
           "verified", range=(0.0, None)),
    KpiDef("co2_per_good_unit_kg", "Carbon intensity per good unit", "单位合格品碳排放", "E * EF / GQ", "kg/unit",
           ("energy_kwh", "plant.emission_factor_kg_per_kwh", "good_quantity"), "lower_is_better",
           "KPI.md 3.3 carbon intensity", "proposed", range=(0.0, None)),
    # ------------------------------------------------------------------ tier KPIs
    KpiDef("networking_rate", "Equipment networking rate", "设备联网率", "N_networked / N_production",
           "ratio", ("networked_machines", "production_machines"), "higher_is_better",
           "KPI.md 3.4 (设备联网率); networked = >= 1 good sample in the bucket", "proposed", range=_R01,
           levels=("line", "area", "site", "plant")),
)

BY_ID: dict[str, KpiDef] = {k.id: k for k in CATALOG}
ELEMENTS: tuple[str, ...] = tuple(k.id for k in CATALOG if k.kind == "element")
GBT2589_KGCE_PER_KWH = 0.1229


def catalog_json(catalog: tuple[KpiDef, ...] = CATALOG) -> str:
    """The catalog as JSON (for `GET /api/v1/kpis/catalog` and `shopfloor kpi catalog`)."""
    return json.dumps({"definition_version": DEFINITION_VERSION,
                       "kpis": [asdict(k) for k in catalog]}, ensure_ascii=False, indent=1)


def _el(tag: str, text: str | float | None, indent: str = "    ") -> str:
    return "" if text is None else f"{indent}<{tag}>{escape(str(text))}</{tag}>\n"


def to_kpiml(catalog: tuple[KpiDef, ...] = CATALOG) -> str:
    """MESA KPI-ML-like XML: one KPIDefinition per entry (status and source go in Property elements)."""
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<KPIDefinitions xmlns="{KPIML_NS}" '
           f'version="{escape(DEFINITION_VERSION)}">\n']
    for k in catalog:
        out.append("  <KPIDefinition>\n")
        out.append(_el("ID", k.id) + _el("Name", k.name_en))
        out.append(f'    <Name xml:lang="zh">{escape(k.name_zh)}</Name>\n')
        out.append(_el("Description", k.notes or k.name_en))
        for level in k.levels:
            out.append(_el("Scope", level))
        out.append(_el("Formula", k.formula) + _el("UnitOfMeasure", k.unit))
        lo, hi = k.range
        if lo is not None or hi is not None:
            out.append("    <Range>\n" + _el("LowerLimit", lo, "      ") + _el("UpperLimit", hi, "      ")
                       + "    </Range>\n")
        out.append(_el("Trend", {"higher_is_better": "Higher-is-better", "lower_is_better": "Lower-is-better",
                                 "none": "None"}[k.trend]))
        out.append(_el("Timing", "Periodically"))
        for i in k.inputs:
            if i in BY_ID:
                out.append(_el("UsesKPIDefinitionID", i))
        for name, value in (("source", k.source), ("status", k.status), ("kind", k.kind),
                            ("inputs", ",".join(k.inputs))):
            out.append(f"    <Property><ID>{name}</ID><Value>{escape(value)}</Value></Property>\n")
        out.append("  </KPIDefinition>\n")
    out.append("</KPIDefinitions>\n")
    return "".join(out)
