"""Checks of the Helm chart and the BronzeBackfill samples, run by ship/tests (one process, so
the Helm engine is loaded once). Prints one JSON document; the Rust test makes the assertions.

    chart_check.py REQUEST.json

REQUEST: {"chart": DIR, "kube_version": "1.36.0", "release": NAME, "namespace": NS,
          "values": {SET: FILE}, "bad_values": {SET: FILE}, "crd": FILE, "samples": [FILE]}

Output:
  lint:       {SET: {"messages": [...], "errors": [...]}}     strict lint with that values set
  renders:    {SET: {"error": str|null, "notes": str, "objects": [{"template", "object",
                     "validation": "ok" | "no-schema" | "ERROR ..."}]}}
  crds:       [{"filename", "object", "validation"}]           the chart's crds/ folder
  bad_values: {SET: {"schema_error": str|null, "render_error": str|null}}
  samples:    {FILE: {"objects": [...], "errors": [str]}}     checked against the CRD's schema
"""

import copy
import json
import sys

import helm_python as helm
import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError
import yaml


def load_values(path):
    with open(path) as f:
        return yaml.safe_load(f) or {}


def k8s_validate(obj, version):
    try:
        kubernetes_validate.validate(obj, version, strict=True)
        return "ok"
    except SchemaNotFoundError:
        return "no-schema"
    except jsonschema.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        return f"ERROR {path}: {e.message}"


def documents(text):
    return [d for d in yaml.safe_load_all(text) if d]


def lint(req, values):
    report = helm.lint(req["chart"], values, strict=True, kube_version="v" + req["kube_version"],
                       namespace=req["namespace"])
    return {"messages": report.get("messages") or [], "errors": report.get("errors") or []}


def render(chart, req, values):
    try:
        out = chart.render(values, name=req["release"], namespace=req["namespace"],
                           is_install=True)
    except helm.HelmError as e:
        return {"error": str(e), "notes": "", "objects": []}
    objects, notes = [], ""
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for obj in documents(text):
            objects.append({"template": template, "object": obj,
                            "validation": k8s_validate(obj, req["kube_version"])})
    return {"error": None, "notes": notes, "objects": objects}


def bad_values(chart, req, values):
    result = {"schema_error": None, "render_error": None}
    try:
        chart.validate_schema(values)
    except helm.HelmError as e:
        result["schema_error"] = str(e)
    try:
        chart.render(values, name=req["release"], namespace=req["namespace"], is_install=True)
    except helm.HelmError as e:
        result["render_error"] = str(e)
    return result


def structural(schema):
    """The CRD's OpenAPI v3 schema as JSON Schema, as strict as the API server's pruning: a field
    the schema does not declare is an error here (the server would silently drop it)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, list):
            for n in node:
                walk(n)
            return
        if not isinstance(node, dict):
            return
        for key in ("properties",):
            for child in node.get(key, {}).values():
                walk(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key])
        for key in ("allOf", "anyOf", "oneOf"):
            if key in node:
                walk(node[key])
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if node.get("x-kubernetes-int-or-string"):
            node.pop("type", None)
            node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
        if (node.get("type") in ("object", ["object", "null"]) and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        for key in [k for k in node if k.startswith("x-kubernetes-") or k == "nullable"]:
            node.pop(key)

    walk(s)
    # apiVersion/kind/metadata are checked by the API server itself.
    s.setdefault("properties", {})
    s["properties"]["metadata"] = {"type": "object"}
    s["properties"]["apiVersion"] = {"type": "string"}
    s["properties"]["kind"] = {"type": "string"}
    return s


def check_samples(req):
    with open(req["crd"]) as f:
        crd = yaml.safe_load(f)
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    versions = {f"{group}/{v['name']}": structural(v["schema"]["openAPIV3Schema"])
                for v in crd["spec"]["versions"] if v.get("served")}
    out = {}
    for path in req["samples"]:
        with open(path) as f:
            objs = documents(f.read())
        errors = []
        for obj in objs:
            if obj.get("kind") != kind:
                errors.append(f"kind {obj.get('kind')!r} is not {kind}")
                continue
            schema = versions.get(obj.get("apiVersion"))
            if schema is None:
                errors.append(f"apiVersion {obj.get('apiVersion')!r} is not served by the CRD")
                continue
            validator = jsonschema.Draft7Validator(schema)
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.path)):
                errors.append(".".join(str(p) for p in e.path) + ": " + e.message)
        out[path] = {"objects": objs, "errors": errors}
    return out


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    result = {"lint": {}, "renders": {}, "crds": [], "bad_values": {}, "samples": {}}
    with helm.Chart.load(req["chart"]) as chart:
        for name, path in sorted(req["values"].items()):
            values = load_values(path)
            result["lint"][name] = lint(req, values)
            result["renders"][name] = render(chart, req, values)
        for crd in chart.crds:
            for obj in documents(crd["data"]):
                result["crds"].append({"filename": crd["filename"], "object": obj,
                                       "validation": k8s_validate(obj, req["kube_version"])})
        for name, path in sorted(req["bad_values"].items()):
            result["bad_values"][name] = bad_values(chart, req, load_values(path))
    result["samples"] = check_samples(req)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
