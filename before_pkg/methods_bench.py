"""forward + backward (methods, not bound) per step: old package vs this one, interleaved, CPU time."""
import sys, importlib.util, time
import numpy as np
sys.path.insert(0, "src")
import deltaflow as new
from deltaflow.engine import backprop as nb
from deltaflow.engine.blas import cap_threads
def load_old(d):
    spec = importlib.util.spec_from_file_location("deltaflow_before", d + "/__init__.py", submodule_search_locations=[d])
    m = importlib.util.module_from_spec(spec); sys.modules["deltaflow_before"] = m; spec.loader.exec_module(m); return m
old = load_old("before_pkg/src/deltaflow")
import importlib; ob = importlib.import_module("deltaflow_before.engine.backprop")
restore = cap_threads(1)
for sizes in ([784, 30, 10], [784, 256, 256, 10]):
    for dt in ("float32",):
        for m in (1, 10, 32):
            rng = np.random.default_rng(0)
            X = rng.random((m, 784)).astype(dt)
            setups = []
            for pkg, bp in ((old, ob), (new, nb)):
                net = pkg.Network(sizes, dtype=dt, seed=0)
                ws = bp.Workspace(net, m)
                Y = np.zeros((m, 10), dtype=dt); Y[:, 0] = 1
                ws.a[0][...] = X
                def step(net=net, ws=ws, Y=Y, bp=bp):
                    bp.forward(net, ws); bp.backward(net, ws, Y)
                setups.append(step)
            n = {1: 3000, 10: 1500, 32: 800}[m] // (4 if sizes[1] == 256 else 1)
            times = [[], []]
            for turn in range(9):
                for i, s in enumerate(setups):
                    t0 = time.process_time()
                    for _ in range(n): s()
                    times[i].append((time.process_time() - t0) / n * 1e6)
            o, w = np.median(times[0]), np.median(times[1])
            print(f"{'-'.join(map(str,sizes)):16s} {dt} m={m:3d}  old {o:7.1f} us  new {w:7.1f} us  old/new {o/w:.3f}")
restore()
