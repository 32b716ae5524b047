"""Monitoring a served model: `maas monitor` reads a server's prediction log (maas.serving.prediction_log)
and compares it with the training profile of the packaged model (compare.py), writes an HTML report and a
JSON summary (report.py), and says which configured threshold was crossed. The maas-monitor Prefect
deployment runs it on a schedule (flows/monitor.py); a crossed threshold fails the run, which the
automation in monitoring/prefect/automations.yaml turns into a notification (automations.py).
"""
