import sys, importlib.util, importlib, timeit
import numpy as np
sys.path.insert(0, "src")
from deltaflow.engine import blas as nb
def load_old(d):
    spec = importlib.util.spec_from_file_location("deltaflow_before", d + "/__init__.py", submodule_search_locations=[d])
    m = importlib.util.module_from_spec(spec); sys.modules["deltaflow_before"] = m; spec.loader.exec_module(m); return m
load_old("before_pkg/src/deltaflow")
ob = importlib.import_module("deltaflow_before.engine.blas")
restore = nb.cap_threads(1)
dt = np.float32
m = 1
D = np.ones((1, 10), dt); ones = np.ones(1, dt); b = np.zeros(10, dt); T2 = np.ones((30, 10), dt); A2 = np.ones((1, 30), dt); b2=np.zeros(10,dt)
for name, mod in (("old", ob), ("new", nb)) * 2:
    blas = mod.ScipyBlas.of(dt)
    nblas = mod.NumpyBlas(dt, direct_min=0)
    cases = {
        "colsum": lambda: blas.column_sums(D, ones, out=b, alpha=-0.1, beta=1.0),
        "affine": lambda: blas.affine(A2, T2, b2, out=D),
        "np_colsum": lambda: nblas.column_sums(D, ones, out=b, alpha=-0.1, beta=1.0),
        "np_plain": lambda: nblas.matmul_bt(D, T2, out=A2),
    }
    res = {k: min(timeit.repeat(f, number=200, repeat=300)) / 200 * 1e6 for k, f in cases.items()}
    print(name, " ".join(f"{k}={v:.2f}" for k, v in res.items()))
restore()
