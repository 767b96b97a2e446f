"""rayd from Python in twenty lines: tasks, get, wait, an actor, and an error that travels.

    build/rayd &
    PYTHONPATH=clients/python python3 examples/python/quickstart.py   # RAYD_ADDRESS to point elsewhere
"""
import rayd

rd = rayd.connect()                                   # $RAYD_ADDRESS, else localhost:8080
add, mul, div = rd.function("add"), rd.function("mul"), rd.function("div")

refs = [mul.remote(i, i) for i in range(100)]         # 100 tasks, refs back at once
print("sum of squares:", sum(rd.get(refs)))           # 328350

ready, not_ready = rd.wait(refs, num_returns=10, timeout=5)
print("ready:", len(ready), "not ready:", len(not_ready))

counter = rd.actor_class("Counter").options(name="quickstart", get_if_exists=True).remote(0)
for _ in range(1000):
    counter.incr.remote(1)                            # one at a time, in order
print("counter:", rd.get(counter.get.remote()))       # 1000
rd.kill(counter)

try:
    rd.get(add.remote(add.remote(div.remote(1, 0), 1), 1))   # an error through 3 tasks
except rayd.TaskError as e:
    print("error:", " <- ".join(x.detail for x in e.chain()))
