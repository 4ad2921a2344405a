"""Renders the Helm chart with the real Helm engine (helm-python-sdk) and prints its objects as
one JSON list. Used by the operator's cluster tier to apply the chart's ServiceAccounts, RBAC and
Secrets and to run the operator with the Deployment's args and environment.

    chart_render.py CHART RELEASE NAMESPACE VALUES.json
"""

import json
import sys

import helm_python as helm
import yaml


def main():
    chart_dir, release, namespace, values_file = sys.argv[1:5]
    with open(values_file) as f:
        values = json.load(f)
    with helm.Chart.load(chart_dir) as chart:
        out = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        objects.extend(d for d in yaml.safe_load_all(text) if d)
    json.dump(objects, sys.stdout)


if __name__ == "__main__":
    main()
