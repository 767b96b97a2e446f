# Ray Core's "Getting Started" walkthrough (docs.ray.io, "What is Ray Core?"), run on rayd.
#
# The code below is Ray's, unchanged but for two lines: the import, and `ray.init()`
# becoming `rayd.connect()`. `@ray.remote` starts a worker thread in this program that
# rayd calls back, so rayd must be allowed to reach it:
#
#   build/rayd --remote-allow http://127.0.0.1:9100 &
#   RAYD_WORKER_PORT=9100 PYTHONPATH=clients/python python3 examples/python/getting_started.py
#
# (RAYD_ADDRESS defaults to http://localhost:8080.) Arguments and results travel as JSON:
# NumPy arrays go as lists (their tolist()), so sum_matrix receives nested lists, which
# np.sum adds up just the same. clients/python/tests/test_getting_started.py runs this file.

# __starting_ray_start__
import rayd

ray = rayd.connect()
# __starting_ray_end__


# fmt: off
# __running_task_start__
# Define the square task.
@ray.remote
def square(x):
    return x * x

# Launch four parallel square tasks.
futures = [square.remote(i) for i in range(4)]

# Retrieve results.
print(ray.get(futures))
# -> [0, 1, 4, 9]
# __running_task_end__
# fmt: on


# fmt: off
# __calling_actor_start__
# Define the Counter actor.
@ray.remote
class Counter:
    def __init__(self):
        self.i = 0

    def get(self):
        return self.i

    def incr(self, value):
        self.i += value

# Create a Counter actor.
c = Counter.remote()

# Submit calls to the actor. These calls run asynchronously but in
# submission order on the remote actor process.
for _ in range(10):
    c.incr.remote(1)

# Retrieve final actor state.
print(ray.get(c.get.remote()))
# -> 10
# __calling_actor_end__
# fmt: on


# fmt: off
# __passing_object_start__
import numpy as np

# Define a task that sums the values in a matrix.
@ray.remote
def sum_matrix(matrix):
    return np.sum(matrix)

# Call the task with a literal argument value.
print(ray.get(sum_matrix.remote(np.ones((100, 100)))))
# -> 10000.0

# Put a large array into the object store.
matrix_ref = ray.put(np.ones((1000, 1000)))

# Call the task with the object reference as an argument.
print(ray.get(sum_matrix.remote(matrix_ref)))
# -> 1000000.0
# __passing_object_end__
# fmt: on
