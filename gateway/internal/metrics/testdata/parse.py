"""Parse Prometheus exposition from stdin with the reference Python client's
parser and print every sample as JSON: [name, labels, value, family type,
help]. With --openmetrics, the input is read as OpenMetrics text instead of
the Prometheus text format 0.0.4.

Run with Debian's python3 (package python3-prometheus-client)."""
import json
import math
import sys

if "--openmetrics" in sys.argv[1:]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families

out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        v = s.value
        if math.isinf(v):
            v = "+Inf" if v > 0 else "-Inf"
        out.append([s.name, s.labels, v, family.type, family.documentation])
json.dump(out, sys.stdout)
