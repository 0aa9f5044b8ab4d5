#!/usr/bin/env python3
"""Generates Switchyard's Grafana dashboards (the JSON files next to this script).

  generate.py           write the dashboards
  generate.py --check   exit 1 if a checked-in dashboard differs from what this script writes

The JSON files are what users import; this script keeps their panels consistent (one
datasource variable, units, legends, layout). Edit here, regenerate, commit both. Standard
library only.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Grafana 12's classic dashboard model (schemaVersion 41); later Grafana versions import and
# migrate it.
SCHEMA_VERSION = 41
DS = {"type": "prometheus", "uid": "${datasource}"}
# The outcomes that count against availability: the contract's export (contract/contract.json,
# from the policy's outcome classes).
with open(os.path.join(HERE, "..", "..", "contract", "contract.json"), encoding="utf-8") as _f:
    _CONTRACT = json.load(_f)
_BAD_OUTCOMES = "|".join(o["name"] for o in _CONTRACT["outcomes"] if o["bad"])
SLO_ERRORS = f'outcome=~"{_BAD_OUTCOMES}"'


def target(expr, legend="", ref=None, instant=False, fmt=None):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "range": not instant, "instant": instant}
    if fmt:
        t["format"] = fmt
    if ref:
        t["refId"] = ref
    return t


def thresholds(*steps):
    """steps: (value, color) pairs after the base color, e.g. ("green", (0.8, "red"))."""
    base, *rest = steps
    return {"mode": "absolute", "steps": [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in rest]}


class Board:
    """Panels laid out left to right in rows of 24 grid units."""

    def __init__(self):
        self.panels = []
        self.x = self.y = self.row_h = 0

    def add(self, kind, title, description, targets, unit, w=8, h=8, **extra):
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        for i, t in enumerate(targets):
            t.setdefault("refId", chr(ord("A") + i))
        defaults = {"unit": unit, "color": {"mode": "palette-classic"}}
        defaults.update(extra.pop("defaults", {}))
        p = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": targets,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": OPTIONS[kind](),
        }
        if kind == "timeseries":
            defaults.setdefault("custom", {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False})
        p.update(extra)
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)
        return p


OPTIONS = {
    "timeseries": lambda: {
        "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["mean", "max", "lastNotNull"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    },
    "stat": lambda: {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
    },
    "gauge": lambda: {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
    },
    "bargauge": lambda: {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
    },
    "heatmap": lambda: {
        "calculate": False,
        "cellGap": 1,
        "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
        "yAxis": {"axisPlacement": "left", "unit": "short"},
        "tooltip": {"mode": "single", "yHistogram": True},
        "legend": {"show": True},
    },
    "table": lambda: {"showHeader": True, "cellHeight": "sm"},
}


def datasource_var():
    return {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": []}


def query_var(name, label, query, multi=False, include_all=False, sort=7):
    """sort 7: natural ascending (v2 before v10)."""
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "definition": query,
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": sort,
        "multi": multi,
        "includeAll": include_all,
        "current": {},
        "options": [],
        "hide": 0,
    }


MODEL_VAR = query_var("model", "Model", "label_values(switchyard_requests_total, model)")
VERSION_VAR = query_var("version", "Version", 'label_values(switchyard_requests_total{model="$model"}, version)', multi=True, include_all=True)


def alert_annotation(matchers):
    return {
        "name": "Switchyard alerts",
        "datasource": DS,
        "enable": True,
        "iconColor": "red",
        "expr": f'ALERTS{{alertstate="firing", {matchers}}}',
        "step": "30s",
        "titleFormat": "{{alertname}}",
        "textFormat": "{{severity}} {{model}}/{{version}} {{sli}}{{signal}}",
        "tagKeys": "severity,version",
        "useValueForTime": False,
    }


def dashboard(uid, title, description, board, variables, annotation):
    kinds = sorted({p["type"] for p in board.panels})
    return {
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "12.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ]
        + [{"type": "panel", "id": k, "name": k, "version": ""} for k in kinds],
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["switchyard"],
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [{"type": "dashboards", "tags": ["switchyard"], "asDropdown": True, "title": "Switchyard", "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False, "tooltip": "", "url": ""}],
        "annotations": {"list": [annotation]},
        "templating": {"list": [datasource_var()] + variables},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "weekStart": "",
        "panels": board.panels,
    }


def overview():
    sel = 'model="$model", version=~"$version"'
    b = Board()
    b.add("stat", "Requests/s", "Requests the filter routed to the selected versions.",
          [target(f"sum(rate(switchyard_requests_total{{{sel}}}[$__rate_interval]))", "requests/s")], "reqps", w=4, h=5)
    b.add("stat", "Error ratio (5m)", "5xx, timeouts and resets over all routed requests (the availability SLI).",
          [target(f"sum(model_version_outcome:switchyard_requests:rate5m{{{sel}, {SLO_ERRORS}}}) / sum(model_version:switchyard_requests:rate5m{{{sel}}})", "errors")],
          "percentunit", w=4, h=5, defaults={"decimals": 2, "thresholds": thresholds("green", (0.001, "orange"), (0.01, "red"))})
    b.add("stat", "p99 latency (5m)", "Slowest selected version's p99, as Envoy measured it.",
          [target(f"max(model_version:switchyard_request_duration_seconds:p99_rate5m{{{sel}}})", "p99")], "s", w=4, h=5)
    b.add("stat", "Objectives", "The model's SLO objectives, from the filter policy.",
          [target('slo:objective:ratio{model="$model"}', "{{sli}}")], "percentunit", w=4, h=5, defaults={"decimals": 2})
    b.add("bargauge", "Error budget remaining (30d)", "Share of the 30-day error budget left, per version and SLI (below 0: overspent).",
          [target(f"slo:period_error_budget_remaining:ratio{{{sel}}}", "{{version}} {{sli}}")], "percentunit", w=4, h=5,
          defaults={"min": 0, "max": 1, "thresholds": thresholds("red", (0.25, "orange"), (0.5, "green"))})
    b.add("stat", "Burn rate now (5m)", "Error budget burn rate over 5 minutes: 1 spends the budget exactly over 30 days; pages start at 14.4.",
          [target(f"slo:current_burn_rate:ratio{{{sel}}}", "{{version}} {{sli}}")], "suffix:x", w=4, h=5,
          defaults={"decimals": 1, "thresholds": thresholds("green", (1, "orange"), (14.4, "red"))})

    b.add("timeseries", "Requests/s by version", "Rate: requests routed to each version (weighted split, sticky and override).",
          [target(f"sum by (version) (rate(switchyard_requests_total{{{sel}}}[$__rate_interval]))", "{{version}}")], "reqps")
    b.add("timeseries", "Failed requests/s by outcome", "Errors: every outcome but success, per version.",
          [target(f'sum by (version, outcome) (rate(switchyard_requests_total{{{sel}, outcome!="success"}}[$__rate_interval]))', "{{version}} {{outcome}}")], "reqps")
    b.add("timeseries", "Duration p50 / p90 / p99", "Duration: request time in Envoy, first byte in to last byte out (recorded over 5m).",
          [target(f"model_version:switchyard_request_duration_seconds:{q}_rate5m{{{sel}}}", "{{version}} " + q) for q in ("p50", "p90", "p99")], "s")

    b.add("timeseries", "SLI error ratio (5m and 1h)", "Bad events over all events, per SLI: availability (5xx, timeouts, resets) and latency (slower than the policy's threshold).",
          [target(f"slo:sli_error:ratio_rate5m{{{sel}}}", "{{version}} {{sli}} 5m"), target(f"slo:sli_error:ratio_rate1h{{{sel}}}", "{{version}} {{sli}} 1h")], "percentunit")
    b.add("timeseries", "Burn rate by window", "Burn rate over the alerting windows. Page: 14.4 (1h and 5m) or 6 (6h and 30m); ticket: 3 (1d and 2h) or 1 (3d and 6h).",
          [target(f"slo:current_burn_rate:ratio{{{sel}}}", "{{version}} {{sli}} 5m")]
          + [target(f"slo:sli_error:ratio_rate{w}{{{sel}}} / on (model, sli) group_left () slo:error_budget:ratio", "{{version}} {{sli}} " + w) for w in ("1h", "6h", "1d")],
          "suffix:x", defaults={"thresholds": thresholds("green", (1, "yellow"), (3, "orange"), (14.4, "red")), "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never", "spanNulls": False, "thresholdsStyle": {"mode": "line"}}})
    b.add("timeseries", "Error budget remaining (30d)", "How the 30-day budget is being spent.",
          [target(f"slo:period_error_budget_remaining:ratio{{{sel}}}", "{{version}} {{sli}}")], "percentunit")

    b.add("table", "Firing alerts", "Switchyard alerts firing now for this model (runbooks: docs/runbooks/).",
          [target('sum by (alertname, version, severity) (ALERTS{alertstate="firing", model="$model"})', "", instant=True, fmt="table")], "none", w=12)
    b.add("timeseries", "Routing decisions/s", "How versions were chosen: weighted split, sticky key, or allowed override; and shadow copies.",
          [target(f"sum by (version, reason) (rate(switchyard_route_decisions_total{{{sel}}}[$__rate_interval]))", "{{version}} {{reason}}"),
           target(f"sum by (version) (rate(switchyard_shadow_requests_total{{{sel}}}[$__rate_interval]))", "{{version}} shadow")], "reqps", w=12)

    # Drift (the drift monitor; details on the drift dashboard).
    b.add("stat", "Dataset drift share (worst window)", DRIFT_SHARE_HELP,
          [target(f"max by (version) (model_version_window:switchyard_drift_dataset_drift_share:ratio{{{sel}}})", "{{version}}")],
          "percentunit", h=6, defaults={"decimals": 0, "min": 0, "max": 1, "thresholds": thresholds("green", (0.25, "orange"), (0.5, "red"))})
    b.add("timeseries", "Drifted columns by window", "Columns that drifted from the model's reference, per version and drift monitor window (windows holding their min_rows, 500 by default).",
          [target(f"model_version_window:switchyard_drift_columns_drifted:count{{{sel}}}", "{{version}} {{window}}")], "short", h=6)
    b.add("stat", "Newest drift sample age", SAMPLE_AGE_HELP,
          [target(f"max by (version) (switchyard_drift_last_sample_age_seconds{{{sel}}})", "{{version}}")],
          "s", h=6, defaults={"decimals": 0, "thresholds": thresholds("green", (60, "orange"), (300, "red"))})
    return dashboard("switchyard-overview", "Switchyard / Service overview",
                     "RED per model and version as clients see it through Envoy, SLO status, error budget and burn rates, drift.",
                     b, [MODEL_VAR, VERSION_VAR], alert_annotation('model="$model"'))


def canary():
    both = 'model="$model", version=~"$stable|$version"'
    role = " * on (model, version) group_left (role) switchyard:version_role:info"
    b = Board()
    b.add("stat", "Canary traffic share (5m)", "Share of the model's routed requests that went to the canary.",
          [target('model_version:switchyard_traffic_share:ratio_rate5m{model="$model", version="$version"}', "{{version}}")], "percentunit", w=6, h=5)
    b.add("stat", "Error ratio (5m): stable | canary", "Availability SLI error ratio of each side.",
          [target('slo:sli_error:ratio_rate5m{model="$model", version="$stable", sli="availability"}', "stable {{version}}"),
           target('slo:sli_error:ratio_rate5m{model="$model", version="$version", sli="availability"}', "canary {{version}}")],
          "percentunit", w=6, h=5, defaults={"decimals": 2})
    b.add("stat", "Canary minus stable error ratio", "Alert SwitchyardCanaryWorseThanStable above 1 percentage point for 2 minutes.",
          [target('model_version:switchyard_canary_error_ratio_delta:rate5m{model="$model", version="$version"}', "{{version}}")],
          "percentunit", w=6, h=5, defaults={"decimals": 2, "thresholds": thresholds("green", (0.01, "red"))})
    b.add("stat", "Canary p99 / stable p99", "Alert SwitchyardCanaryWorseThanStable above 1.5x (and 25 ms) for 2 minutes.",
          [target('model_version:switchyard_canary_p99_ratio:rate5m{model="$model", version="$version"}', "{{version}}")],
          "suffix:x", w=6, h=5, defaults={"decimals": 2, "thresholds": thresholds("green", (1.5, "red"))})

    b.add("timeseries", "Traffic share", "Weighted split as it happened (sticky users and overrides included).",
          [target(f"model_version:switchyard_traffic_share:ratio_rate5m{{{both}}}{role}", "{{role}} {{version}}")], "percentunit", w=12)
    b.add("timeseries", "Error ratio (5m)", "Availability SLI error ratio, stable against canary.",
          [target(f'slo:sli_error:ratio_rate5m{{{both}, sli="availability"}}{role}', "{{role}} {{version}}")], "percentunit", w=12)
    b.add("timeseries", "Latency p50 / p99", "Request duration in Envoy, stable against canary.",
          [target(f"model_version:switchyard_request_duration_seconds:{q}_rate5m{{{both}}}{role}", "{{role}} {{version}} " + q) for q in ("p50", "p99")], "s", w=12)
    b.add("timeseries", "Latency SLI error ratio (5m)", "Share of requests slower than the policy's latency threshold.",
          [target(f'slo:sli_error:ratio_rate5m{{{both}, sli="latency"}}{role}', "{{role}} {{version}}")], "percentunit", w=12)
    b.add("timeseries", "Sampled payloads/s", "Payload samples captured by the filter and delivered to the collector, per side: the drift monitor's input.",
          [target(f'sum by (version, result) (rate(switchyard_samples_total{{{both}, result=~"captured|sent"}}[$__rate_interval]))', "{{version}} {{result}}")], "cps")
    b.add("timeseries", "Failed requests/s by outcome", "What the failures are, per side.",
          [target(f'sum by (version, outcome) (rate(switchyard_requests_total{{{both}, outcome!="success"}}[$__rate_interval]))', "{{version}} {{outcome}}")], "reqps")
    b.add("timeseries", "Shadow requests/s", "Requests mirrored to a version (responses discarded by Envoy).",
          [target(f"sum by (version) (rate(switchyard_shadow_requests_total{{{both}}}[$__rate_interval]))", "{{version}}")], "reqps")
    variables = [
        MODEL_VAR,
        query_var("stable", "Stable", 'label_values(switchyard:version_role:info{model="$model", role="stable"}, version)'),
        query_var("version", "Canary", 'label_values(switchyard:version_role:info{model="$model", role="canary"}, version)', sort=8),
    ]
    return dashboard("switchyard-canary", "Switchyard / Canary vs stable",
                     "Stable and canary side by side: traffic share, error ratio, latency percentiles, sampled payload rate. Roles come from the filter policy (first version listed = stable).",
                     b, variables, alert_annotation('model="$model", version=~"$stable|$version"'))


def backend():
    sel = 'model="$model", version=~"$version"'
    b = Board()
    b.add("timeseries", "Queue depth and limit", "Requests waiting in the batching queue (all replicas) against max_queue_size; at the limit, new requests get 429.",
          [target(f"sum by (version) (switchyard_queue_depth{{{sel}}})", "{{version}} queued"),
           target(f"max by (version) (switchyard_max_queue_size{{{sel}}})", "{{version}} limit")], "short")
    b.add("gauge", "Queue fill (fullest replica, 1m)", "Alert SwitchyardBackendQueueNearCapacity above 80% for 5 minutes.",
          [target(f"model_version:switchyard_queue_fill:ratio_avg1m{{{sel}}}", "{{version}}")], "percentunit",
          defaults={"min": 0, "max": 1, "thresholds": thresholds("green", (0.5, "orange"), (0.8, "red"))})
    b.add("timeseries", "In flight", "Requests accepted and not yet answered (queued + computing + encoding).",
          [target(f"sum by (version) (switchyard_in_flight_requests{{{sel}}})", "{{version}}")], "short")

    b.add("timeseries", "Queue wait vs compute (mean)", "Mean time a request waits in the queue, and mean engine time per batch (every request of a batch waits for all of it).",
          [target(f"model_version:switchyard_queue_duration_seconds:mean_rate5m{{{sel}}}", "{{version}} queue"),
           target(f"model_version:switchyard_compute_duration_seconds:mean_rate5m{{{sel}}}", "{{version}} compute")], "s")
    b.add("timeseries", "Share of time queueing", "Queue wait / (queue wait + compute): high means requests wait for batches more than they compute.",
          [target(f"model_version:switchyard_queue_time_share:ratio_rate5m{{{sel}}}", "{{version}}")], "percentunit")
    b.add("timeseries", "Queue / compute p99", "p99 of the queue wait per request and of the engine time per batch.",
          [target(f"histogram_quantile(0.99, sum by (version, le) (rate(switchyard_queue_duration_seconds_bucket{{{sel}}}[$__rate_interval])))", "{{version}} queue p99"),
           target(f"histogram_quantile(0.99, sum by (version, le) (rate(switchyard_compute_duration_seconds_bucket{{{sel}}}[$__rate_interval])))", "{{version}} compute p99")], "s")

    b.add("heatmap", "Batch size distribution", "Rows per executed batch (all selected versions).",
          [target(f"sum by (le) (rate(switchyard_batch_size_bucket{{{sel}}}[$__rate_interval]))", "{{le}}", fmt="heatmap")], "short")
    b.add("timeseries", "Mean batch size and limit", "Mean rows per batch against max_batch_size.",
          [target(f"model_version:switchyard_batch_size:mean_rate5m{{{sel}}}", "{{version}} mean"),
           target(f"max by (version) (switchyard_max_batch_size{{{sel}}})", "{{version}} max")], "short")
    b.add("timeseries", "Expirations and rejections/s", "Dropped instead of answered: queue_full (429), expired (504 in the queue), client_gone.",
          [target(f"sum by (version, reason) (rate(switchyard_requests_dropped_total{{{sel}}}[$__rate_interval]))", "{{version}} {{reason}}")], "reqps")

    b.add("timeseries", "Backend outcomes/s", "Inference requests by outcome as the backend answered them.",
          [target(f"sum by (version, outcome) (rate(switchyard_inference_requests_total{{{sel}}}[$__rate_interval]))", "{{version}} {{outcome}}")], "reqps")
    b.add("timeseries", "Device busy (engine seconds per second)", "Engine busy time per device: 1 = one device fully busy.",
          [target(f"sum by (version, device) (rate(switchyard_device_seconds_total{{{sel}}}[$__rate_interval]))", "{{version}} {{device}}")], "percentunit")
    b.add("stat", "Ready", "1 when the version serves requests (per replica).",
          [target(f"switchyard_model_ready{{{sel}}}", "{{version}} {{instance}}")], "none",
          defaults={"mappings": [{"type": "value", "options": {"0": {"text": "not ready", "color": "red"}, "1": {"text": "ready", "color": "green"}}}], "thresholds": thresholds("red", (1, "green"))})

    b.add("timeseries", "GPU utilisation", "From nvidia-smi, on backends with a model on CUDA (empty on CPU-only hosts).",
          [target("switchyard_gpu_utilization_ratio", "{{instance}} gpu {{gpu}}")], "percentunit", w=12)
    b.add("timeseries", "GPU memory", "Memory in use (all processes) and in total, from nvidia-smi (empty on CPU-only hosts).",
          [target("switchyard_gpu_memory_used_bytes", "{{instance}} gpu {{gpu}} used"),
           target("switchyard_gpu_memory_total_bytes", "{{instance}} gpu {{gpu}} total")], "bytes", w=12)
    return dashboard("switchyard-backend", "Switchyard / Backend internals",
                     "The batching backend: queue depth, queue vs compute time, batch size distribution, expirations and rejections, device utilisation and memory.",
                     b, [MODEL_VAR, VERSION_VAR], alert_annotation('model="$model"'))


def finops():
    sel = 'model="$model", version=~"$version"'
    b = Board()
    b.add("stat", "Cost per 1,000 inferences", "Busy device-seconds x the device's hourly price (dashboards/prices.json), per 1,000 successful requests, over 5m.",
          [target(f"model_version:switchyard_cost_per_1k_inferences_dollars:rate5m{{{sel}}}", "{{version}}")], "currencyUSD", w=6, h=5, defaults={"decimals": 4})
    b.add("stat", "Spend per hour (busy)", "What the engines' busy time costs per hour, per version.",
          [target(f"sum by (version) (model_version:switchyard_cost_dollars_per_hour:rate5m{{{sel}}})", "{{version}}")], "currencyUSD", w=6, h=5, defaults={"decimals": 3})
    b.add("stat", "Idle cost per hour", "Device time paid for and not computing, all backends.",
          [target("sum(instance_device:switchyard_idle_cost_dollars_per_hour:rate5m)", "idle")], "currencyUSD", w=6, h=5, defaults={"decimals": 3})
    b.add("stat", "Device hourly price", "The configured prices (dashboards/prices.json, rendered into switchyard:device_hourly_cost:dollars).",
          [target("switchyard:device_hourly_cost:dollars", "{{device_kind}}")], "currencyUSD", w=6, h=5, defaults={"decimals": 3})

    b.add("timeseries", "Cost per 1,000 inferences by version", "Compare versions: a canary that needs more device time per inference costs more.",
          [target(f"model_version:switchyard_cost_per_1k_inferences_dollars:rate5m{{{sel}}}", "{{version}}")], "currencyUSD", w=12)
    b.add("timeseries", "Device-seconds per inference", "Engine busy time per successful request, by version (shadow traffic included in the device time).",
          [target(f"model_version:switchyard_device_seconds_per_inference:rate5m{{{sel}}}", "{{version}}")], "s", w=12)
    b.add("timeseries", "Batch fill efficiency", "Mean batch size / max_batch_size: low fill means paying per batch for few rows.",
          [target(f"model_version:switchyard_batch_fill:ratio_rate5m{{{sel}}}", "{{version}}")], "percentunit",
          defaults={"min": 0, "max": 1})
    b.add("timeseries", "Idle share by device", "Share of wall time a backend's engines on a device did not compute.",
          [target("instance_device:switchyard_device_idle:ratio_rate5m", "{{instance}} {{device}}")], "percentunit", defaults={"min": 0, "max": 1})
    b.add("timeseries", "Spend per hour by version", "Busy device time x price, per hour.",
          [target(f"model_version:switchyard_cost_dollars_per_hour:rate5m{{{sel}}}", "{{version}}")], "currencyUSD")
    b.add("timeseries", "Inferences/s", "Successful inference requests per second, by version (the denominator of cost per inference).",
          [target(f"model_version:switchyard_inferences:rate5m{{{sel}}}", "{{version}}")], "reqps", w=12)
    b.add("timeseries", "Idle cost per hour by device", "Idle share x the device's hourly price.",
          [target("instance_device:switchyard_idle_cost_dollars_per_hour:rate5m", "{{instance}} {{device}}")], "currencyUSD", w=12)
    tenants = ("With identity in the policy: the policy's named tenants by name, every other tenant as 'other'. "
               "Showback: each model's spend split by the tenants' shares of its requests.")
    b.add("bargauge", "Spend per hour by tenant", tenants,
          [target("sort_desc(tenant:switchyard_cost_dollars_per_hour:rate5m)", "{{tenant}}")], "currencyUSD", w=8,
          defaults={"decimals": 3})
    b.add("timeseries", "Cost per 1,000 requests by tenant", tenants + " Quota refusals cost nothing and are not counted.",
          [target("tenant:switchyard_cost_per_1k_requests_dollars:rate5m", "{{tenant}}")], "currencyUSD", w=8)
    b.add("timeseries", "Requests/s by tenant (and refused by quota)", "Requests a version served per tenant, and ('refused') Envoy's 429s for a tenant over its quota.",
          [target('sum by (tenant) (tenant_model:switchyard_requests:rate5m{model="$model"})', "{{tenant}}"),
           target('sum by (tenant) (tenant_model:switchyard_quota_refused:rate5m{model="$model"})', "{{tenant}} refused")],
          "reqps", w=8)
    return dashboard("switchyard-finops", "Switchyard / FinOps",
                     "Cost per 1,000 inferences and device-seconds per request by version, batch fill efficiency, idle share; spend by tenant. Prices: dashboards/prices.json.",
                     b, [MODEL_VAR, VERSION_VAR], alert_annotation('model="$model"'))


DRIFT_SHARE_HELP = ("Share of the tested columns (inputs and outputs) that drifted from the model's reference, in windows "
                    "holding their min_rows (500 by default); dataset drift at drift_share (half by default): alert SwitchyardDatasetDrift after 10 minutes.")
SAMPLE_AGE_HELP = ("Seconds since the drift monitor's newest sample of the version. It grows while the version gets no "
                   "traffic; alert SwitchyardDriftSamplesStopped above 5 minutes while the filter still samples it.")
P_VALUE_TESTS = "ks|chisquare|z"
DISTANCE_TESTS = "wasserstein|jensenshannon|psi"


def with_test(metric, sel):
    """A per-column drift gauge with its test as a label, one series per version, window and column."""
    return (f"max by (version, window, column, test) ({metric}{{{sel}}}"
            f" * on (instance, model, version, window, column) group_left (test) switchyard_drift_column_test{{{sel}}})")


def drift():
    sel = 'model="$model", version=~"$version", window=~"$window"'
    vsel = 'model="$model", version=~"$version"'
    b = Board()
    b.add("stat", "Dataset drift share", DRIFT_SHARE_HELP,
          [target(f"model_version_window:switchyard_drift_dataset_drift_share:ratio{{{sel}}}", "{{version}} {{window}}")],
          "percentunit", w=6, h=5, defaults={"decimals": 0, "min": 0, "max": 1, "thresholds": thresholds("green", (0.25, "orange"), (0.5, "red"))})
    b.add("stat", "Drifted columns", "Columns that drifted in each window now (windows holding their min_rows).",
          [target(f"model_version_window:switchyard_drift_columns_drifted:count{{{sel}}}", "{{version}} {{window}}")],
          "short", w=6, h=5, defaults={"decimals": 0, "thresholds": thresholds("green", (1, "orange"))})
    b.add("stat", "Reference", "The model's reference: rows (collected so far, for a reference taken from a version's first rows) and whether it is complete (1); windows are tested once it is.",
          [target('max(switchyard_drift_reference_rows{model="$model"})', "rows"),
           target('max(switchyard_drift_reference_ready{model="$model"})', "ready")],
          "short", w=6, h=5, defaults={"decimals": 0})
    b.add("stat", "Newest sample age", SAMPLE_AGE_HELP,
          [target(f"max by (version) (switchyard_drift_last_sample_age_seconds{{{vsel}}})", "{{version}}")],
          "s", w=6, h=5, defaults={"decimals": 0, "thresholds": thresholds("green", (60, "orange"), (300, "red"))})

    b.add("timeseries", "Dataset drift share", DRIFT_SHARE_HELP,
          [target(f"model_version_window:switchyard_drift_dataset_drift_share:ratio{{{sel}}}", "{{version}} {{window}}")], "percentunit", w=12,
          defaults={"min": 0, "max": 1, "thresholds": thresholds("green", (0.5, "red")),
                    "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never", "spanNulls": False, "thresholdsStyle": {"mode": "line"}}})
    b.add("timeseries", "Drifted columns", "Columns drifted now, and columns drifted at every evaluation of the last 30 minutes (alert SwitchyardColumnDrift when there are some without dataset drift).",
          [target(f"model_version_window:switchyard_drift_columns_drifted:count{{{sel}}}", "{{version}} {{window}} now"),
           target(f"model_version_window:switchyard_drift_columns_drifted:count_min30m{{{sel}}}", "{{version}} {{window}} for 30m")], "short", w=12)

    table = b.add("table", "Columns: score vs threshold",
          f"Every tested column's last evaluation. p-value tests ({P_VALUE_TESTS.replace('|', ', ')}): drifted below the threshold; "
          f"distances ({DISTANCE_TESTS.replace('|', ', ')}): drifted at or above it. Inputs are features[i], outputs probabilities[j] and probabilities.class.",
          [target(with_test("switchyard_drift_score", sel), "", instant=True, fmt="table"),
           target(with_test("switchyard_drift_threshold", sel), "", instant=True, fmt="table"),
           target(with_test("switchyard_drift_column_drifted", sel), "", instant=True, fmt="table")],
          "none", w=24, h=10, defaults={"decimals": 4},
          transformations=[
              {"id": "merge", "options": {}},
              {"id": "organize", "options": {"excludeByName": {"Time": True},
                                             "indexByName": {"version": 0, "window": 1, "column": 2, "test": 3, "Value #A": 4, "Value #B": 5, "Value #C": 6},
                                             "renameByName": {"Value #A": "score", "Value #B": "threshold", "Value #C": "drifted"}}},
              {"id": "sortBy", "options": {"sort": [{"field": "drifted", "desc": True}]}},
          ])
    table["fieldConfig"]["overrides"] = [{
        "matcher": {"id": "byName", "options": "drifted"},
        "properties": [
            {"id": "decimals", "value": 0},
            {"id": "mappings", "value": [{"type": "value", "options": {"0": {"text": "no", "color": "green"}, "1": {"text": "DRIFT", "color": "red"}}}]},
            {"id": "custom.cellOptions", "value": {"type": "color-text"}},
        ],
    }]
    b.add("timeseries", "Drift margin: the 10 columns closest to drifting",
          "Each column's score against its threshold on one scale, 1 = the threshold, above 1 = drifted: distance / threshold for distances, "
          "ln(p) / ln(threshold) for p-values (capped at 10).",
          [target(f"topk(10, max by (version, window, column) (clamp_max("
                  f"(switchyard_drift_score{{{sel}}} / switchyard_drift_threshold{{{sel}}} and ignoring (test) switchyard_drift_column_test{{{sel}, test=~\"{DISTANCE_TESTS}\"}})"
                  f" or (ln(switchyard_drift_score{{{sel}}}) / ln(switchyard_drift_threshold{{{sel}}}) and ignoring (test) switchyard_drift_column_test{{{sel}, test=~\"{P_VALUE_TESTS}\"}}),"
                  f" 10)))", "{{version}} {{window}} {{column}}")], "short", w=24,
          defaults={"min": 0, "thresholds": thresholds("green", (1, "red")),
                    "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never", "spanNulls": False, "thresholdsStyle": {"mode": "line"}}})

    b.add("timeseries", "Rows in window", "Rows each window held at its last evaluation (drift series and alerts need its min_rows, 500 by default).",
          [target(f"max by (version, window) (switchyard_drift_window_rows{{{sel}}})", "{{version}} {{window}}")], "short",
          defaults={"min": 0, "thresholds": thresholds("red", (500, "green")),
                    "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False, "thresholdsStyle": {"mode": "line"}}})
    b.add("timeseries", "Newest sample age", SAMPLE_AGE_HELP,
          [target(f"max by (version) (switchyard_drift_last_sample_age_seconds{{{vsel}}})", "{{version}}")], "s",
          defaults={"min": 0, "thresholds": thresholds("green", (300, "red")),
                    "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False, "thresholdsStyle": {"mode": "line"}}})
    b.add("timeseries", "Samples: filter sent vs monitor ingested", "Samples the filter delivered to the collector, and samples (and their rows) that entered the monitor's windows: a gap is samples lost between them or skipped.",
          [target(f'sum by (version) (rate(switchyard_samples_total{{{vsel}, result="sent"}}[$__rate_interval]))', "{{version}} sent by the filter"),
           target(f"sum by (version) (rate(switchyard_drift_samples_ingested_total{{{vsel}}}[$__rate_interval]))", "{{version}} samples ingested"),
           target(f"sum by (version) (rate(switchyard_drift_rows_ingested_total{{{vsel}}}[$__rate_interval]))", "{{version}} rows ingested")], "cps")

    b.add("timeseries", "Lines skipped/s by reason", "Lines of the samples file that gave no rows, for every model the monitor reads. Expected: not_ok (failed requests), comparison, empty, unconfigured; alert SwitchyardDriftLinesSkipped on malformed, shape, truncated, oversized, too_many_versions above 5%.",
          [target("sum by (reason) (rate(switchyard_drift_lines_skipped_total[$__rate_interval]))", "{{reason}}")], "cps")
    b.add("timeseries", "Monitor memory", "Bytes the model's windows and reference summaries hold (estimate).",
          [target('max by (instance) (switchyard_drift_memory_bytes{model="$model"})', "{{instance}}")], "bytes")
    b.add("timeseries", "Evaluation time", "Wall time of the monitor's last evaluation of every window (it evaluates every evaluate_every_seconds, 5 s by default).",
          [target("max by (instance) (switchyard_drift_evaluation_duration_seconds)", "{{instance}}")], "s")
    variables = [
        query_var("model", "Model", "label_values(switchyard_drift_reference_ready, model)"),
        query_var("version", "Version", 'label_values(switchyard_drift_window_rows{model="$model"}, version)', multi=True, include_all=True),
        query_var("window", "Window", 'label_values(switchyard_drift_window_rows{model="$model"}, window)', multi=True, include_all=True),
    ]
    return dashboard("switchyard-drift", "Switchyard / Drift",
                     "Drift of each model version's inputs and outputs from the model's reference, per drift monitor window: dataset drift share, drifted columns, per-column scores against thresholds, window sizes, sample freshness and skipped lines.",
                     b, variables, alert_annotation('model="$model"'))


DASHBOARDS = {
    "switchyard-overview.json": overview,
    "switchyard-canary.json": canary,
    "switchyard-backend.json": backend,
    "switchyard-finops.json": finops,
    "switchyard-drift.json": drift,
}


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    stale = []
    for name, build in DASHBOARDS.items():
        path = os.path.join(HERE, name)
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        if check:
            try:
                with open(path) as f:
                    if f.read() != text:
                        stale.append(name)
            except OSError:
                stale.append(name)
        else:
            with open(path, "w") as f:
                f.write(text)
    if stale:
        print(f"generate.py: out of date: {', '.join(stale)}; run dashboards/grafana/generate.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
