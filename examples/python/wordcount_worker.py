"""A rayd worker in Python with the client: a function and an actor class, one decorator
each. rayd calls them over HTTP; the actor's state is kept by rayd, so this process keeps
nothing between calls and can be restarted or run many times behind a balancer.

    build/rayd --remote-allow http://127.0.0.1:9000 &
    PYTHONPATH=clients/python python3 examples/python/wordcount_worker.py 9000 &
    PYTHONPATH=clients/python python3 -c '
    import rayd; rd = rayd.connect()
    print(rd.get(rd.function("wordcount").remote("the cat and the hat")))   # 5
    acct = rd.actor_class("Account").remote(100)
    acct.deposit.remote(50); print(rd.get(acct.withdraw.remote(30)))       # 120'

An exception answers a problem+json 500, which rayd stores as a TaskError (the exception's
class, message and traceback in its cause) and does not retry; rayd.RetryableError asks
rayd for another attempt.
"""
import sys

import rayd

rd = rayd.connect()                          # $RAYD_ADDRESS, else localhost:8080
worker = rd.worker(port=int(sys.argv[1]) if len(sys.argv) > 1 else 9000)


@worker.function
def wordcount(text):
    return len(text.split())


@worker.actor_class
class Account:                               # state held by rayd, endpoint stateless
    def __init__(self, balance=0):
        self.balance = balance

    def deposit(self, n):
        self.balance += n
        return self.balance

    def withdraw(self, n):
        if n > self.balance:
            raise ValueError("cannot withdraw %s: the balance is %s" % (n, self.balance))
        self.balance -= n
        return self.balance


worker.serve()                               # registers with rayd, serves until Ctrl-C
