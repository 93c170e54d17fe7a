"""Switchyard vs nginx, side by side: the code behind benches/compare.py.

One module per concern, in the order a run uses them:

- common: paths, the log line, BenchError, the bounded wait
- procs: every process started is tracked and stopped on exit
- procfs: CPU and memory of processes and of the machine, from /proc
- net: free ports and small HTTP clients for readiness and polling
- tools: nginx, wrk and the Switchyard binary found, installed or built
- configmap: a kubelet-style ConfigMap volume and its atomic swaps
- configs: equivalent routes.yaml and nginx.conf for both proxies
- proxies: the nginx and Switchyard processes under test
- upstream: the one shared upstream and the dead port
- wrk: load generation, wrk's output parsed, CPU accounted per run
- stats: medians over the quiet rounds
- fmt: how numbers are written in the report
- throughput, bigtable, reloads, swap_to_serving, churn: the scenarios
- logscan: the proxies' own logs, counted and grouped
- report: the markdown table and its details
- bench: what the scenarios share, and their order
- cli: the command line of benches/compare.py
"""
