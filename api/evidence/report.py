"""Human and form-filling views of an evaluation: annex CSV, bilingual offline HTML, KPI-ML values."""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any
from xml.sax.saxutils import escape as xesc

RESULT_TEXT = {"pass": ("pass", "达标"), "fail": ("fail", "未达标"), "not_enough_data": ("not enough data", "数据不足"),
               "reported": ("reported", "已报告"), "attested": ("attested by the plant", "企业自证"),
               "awaiting_attestation": ("awaiting the plant's attestation", "待企业自证")}
READY_TEXT = {"red": ("red: a gate is not met", "红：有门槛未达标"),
              "yellow": ("yellow: data or attestation missing", "黄：数据或自证材料不全"),
              "blue": ("blue: every gate met", "蓝：全部门槛已满足")}
STATUS_TEXT = {"V": ("verified", "已核实"), "S": ("secondary", "二手来源"), "U": ("unverified", "未核实"),
               "P": ("proposed", "建议")}


def fmt(value: Any, unit: str | None) -> str:
    """A value as a person copies it into a form: ratios as %, others with their unit."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value * 100:.2f} %" if unit == "ratio" else f"{value:.6g}{' ' + unit if unit else ''}"
    return str(value)


def _factor_text(c: dict[str, Any]) -> str:
    ef = (c.get("emission_factor") or {}).get("report")
    return "" if not ef else f"{ef['kg_per_kwh']} kg/kWh {ef['id']} ({ef['document']}, {ef['year']})"


def annex_csv(ev: dict[str, Any]) -> str:
    """One line per criterion with the value to copy into the online application form."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["criterion", "tier", "title_zh", "title_en", "value_for_form", "value", "unit", "improvement",
                "baseline_value", "result", "status", "source", "window_start", "window_end", "coverage",
                "emission_factor"])
    for c in ev["criteria"]:
        w.writerow([c["id"], c["tier"], c["title"]["zh"], c["title"]["en"], fmt(c.get("value"), c.get("unit")),
                    "" if c.get("value") is None else repr(c["value"]), c.get("unit") or "",
                    "" if c.get("improvement") is None else f"{c['improvement'] * 100:.2f} %",
                    "" if c.get("baseline_value") is None else repr(c["baseline_value"]), c["result"],
                    STATUS_TEXT[c["status_mark"]][0], " ".join(c["source"]), c["window"]["start"],
                    c["window"]["end"], "" if c.get("coverage") is None else f"{c['coverage']:.4f}",
                    _factor_text(c)])
    return buf.getvalue()


def _carbon_html(carbon: dict[str, Any]) -> str:
    out = ["<h2>CO₂ / 碳排放</h2><table><tr><th>period 期间</th><th>energy kWh 电量</th><th>factor 因子</th>"
           "<th>CO₂ kg</th><th>document, year 文件与年份</th></tr>"]
    for name in ("report", "baseline"):
        f = carbon.get(name)
        if not f:
            continue
        fac = f["factor"]
        out.append(f"<tr><td>{name}</td><td>{escape(fmt(f['energy_kwh'], None))}</td>"
                   f"<td>{fac['kg_per_kwh']} kg/kWh ({escape(fac['id'])})</td><td>{escape(fmt(f['co2_kg'], None))}"
                   f"</td><td>{escape(fac['document'])}, {fac['year']}</td></tr>")
    out.append("</table>")
    same = carbon.get("same_factor")
    if same is not None:
        out.append(f"<p>{'Same factor in baseline and report period / 基线与报告期使用同一因子' if same else 'Different factors in baseline and report period / 基线与报告期因子不同'}</p>")
    return "".join(out)


def report_html(ev: dict[str, Any], manifest: dict[str, Any], carbon: dict[str, Any]) -> str:
    """A self-contained bilingual page (no scripts, no external resources)."""
    rb = ev["rulebook"]
    h = [f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">
<title>Evidence pack / 证据包 {escape(rb['id'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;
padding:3px 6px;font-size:90%}}.red{{background:#f8d0d0}}.yellow{{background:#fff3b0}}.blue{{background:#cfe3ff}}</style>
</head><body><h1>{escape(rb['title']['zh'])}<br>{escape(rb['title']['en'])}</h1>
<p>Rulebook 规则 {escape(rb['id'])} {escape(rb['version'])} · scope 范围 {escape(manifest['scope'])} ·
report period 报告期 {escape(manifest['from'])} – {escape(manifest['to'])} · baseline 基线
{escape(str(manifest.get('baseline_from') or '—'))} – {escape(str(manifest.get('baseline_to') or '—'))}</p>
<p>Status marks 来源状态: V verified 已核实 · S secondary 二手来源 · U unverified 未核实 · P proposed 建议.
Attested criteria are declared by the plant, not derived from data. 自证项由企业声明，不由数据推导。</p>
<h2>Readiness / 就绪度</h2><table><tr><th>tier 等级</th><th>readiness 就绪度</th><th>missing 缺项</th></tr>"""]
    for t in ev["tiers"]:
        miss = "; ".join(f"{m['id']} ({RESULT_TEXT[m['result']][1]} {m['result']})" for m in t["missing"])
        en, zh = READY_TEXT[t["readiness"]]
        h.append(f"<tr class='{t['readiness']}'><td>{escape(t['name']['zh'])} {escape(t['name']['en'])}</td>"
                 f"<td>{escape(zh)} / {escape(en)}</td><td>{escape(miss)}</td></tr>")
    h.append("</table><h2>Criteria / 评价项</h2><table><tr><th>id</th><th>tier</th><th>criterion 评价项</th>"
             "<th>value 数值</th><th>baseline 基线</th><th>improvement 改善</th><th>coverage 覆盖率</th>"
             "<th>result 结果</th><th>status 状态</th><th>source 来源</th></tr>")
    for c in ev["criteria"]:
        en, zh = RESULT_TEXT[c["result"]]
        st = STATUS_TEXT[c["status_mark"]]
        imp = "" if c.get("improvement") is None else f"{c['improvement'] * 100:.2f} %"
        cov = "" if c.get("coverage") is None else f"{c['coverage'] * 100:.1f} %"
        note = f"<br><small>{escape(c['note'])}</small>" if c.get("note") else ""
        ef = (c.get("emission_factor") or {}).get("report")
        if ef:
            note += (f"<br><small>CO₂ factor 排放因子 {ef['kg_per_kwh']} kg/kWh ({escape(ef['id'])}), "
                     f"{escape(ef['document'])}, {ef['year']}</small>")
        why = f"<br><small>{escape(c['why'])}</small>" if c.get("why") else ""
        h.append(f"<tr><td>{escape(c['id'])}</td><td>{escape(c['tier'])}</td><td>{escape(c['title']['zh'])}<br>"
                 f"{escape(c['title']['en'])}{note}</td><td>{escape(fmt(c.get('value'), c.get('unit')))}</td>"
                 f"<td>{escape(fmt(c.get('baseline_value'), c.get('unit')))}</td><td>{imp}</td><td>{cov}</td>"
                 f"<td>{escape(zh)} / {escape(en)}{why}</td><td>{c['status_mark']} {escape(st[1])} / {st[0]}</td>"
                 f"<td>{escape(' '.join(c['source']))}</td></tr>")
    h.append("</table>")
    h.append(_carbon_html(carbon))
    h.append(f"<p><small>{escape(manifest['code_version'])} · KPI definitions {escape(manifest['definition_version'])}"
             " · verify: <code>shopfloor evidence verify PACK --key signing.pub --raw EXPORT_DIR</code></small></p>"
             "</body></html>\n")
    return "".join(h)


def kpiml_values(rows: list[dict[str, Any]]) -> str:
    """The KPI rows as MESA KPI-ML KPIValue elements (with the catalog's definitions before them)."""
    from kpi.catalog import KPIML_NS, to_kpiml

    defs = to_kpiml().split("\n", 1)[1]  # without the XML declaration
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<KPIML xmlns="{KPIML_NS}">\n', defs, "<KPIValues>\n"]
    for i, r in enumerate(rows):
        out.append(f"  <KPIValue><ID>{i + 1}</ID><Name>{xesc(r['kpi'])}</Name>"
                   f"<TimeRange><Start>{xesc(r['bucket_start'])}</Start><End>{xesc(str(r['bucket_end']))}</End>"
                   f"</TimeRange><Value>{'' if r['value'] is None else repr(r['value'])}</Value>"
                   f"<UnitOfMeasure>{xesc(r['unit'] or '')}</UnitOfMeasure><KPIInstanceID>{xesc(r['asset_id'])}/"
                   f"{xesc(r['kpi'])}/{xesc(r['bucket'])}</KPIInstanceID>"
                   f"<Property><ID>coverage</ID><Value>{'' if r['coverage'] is None else r['coverage']}</Value></Property>"
                   f"<Property><ID>revision</ID><Value>{r['revision']}</Value></Property>"
                   + (f"<Property><ID>null_reason</ID><Value>{xesc(r['null_reason'])}</Value></Property>"
                      if r["null_reason"] else "") + "</KPIValue>\n")
    out.append("</KPIValues>\n</KPIML>\n")
    return "".join(out)
