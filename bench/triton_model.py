"""Triton python-backend model for the benchmark: an eddy step graph with h/c kept per correlation id.

Not part of eddy: ``bench/bench_triton.py`` copies it to ``REPO/<name>/1/model.py``
of the Triton model repository it builds. What many Triton users do for custom
state on the python backend: every ``execute`` call gets the requests the
sequence batcher (``oldest`` strategy) gathered, reads x/START/END/CORRID of
each, gathers each sequence's state, runs the step graph once for the whole
batch with onnxruntime (1 thread, as eddy), scatters the new state back and
drops it on END. Inputs ``x [1, F]``, output ``y [1, O]``, like eddy's OIP model.

The Triton stub does not reliably inherit ``PYTHONPATH``, so the model puts the
site-packages named by its ``site_packages`` parameter (a venv with numpy < 2
and onnxruntime) on ``sys.path`` itself.
"""

import json
import sys


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        sys.path.insert(0, params["site_packages"])
        global np, pb_utils
        import numpy as np
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        so = ort.SessionOptions()  # eddy's options (runtime/core/model.session_options)
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(params["step_onnx"], so, providers=["CPUExecutionProvider"])
        self.state_names = [i.name for i in self.session.get_inputs() if i.name != "x"]  # h0, c0
        self.units = {i.name: i.shape[1] for i in self.session.get_inputs() if i.name != "x"}
        self.outputs = ["y", *(f"{n}_out" for n in self.state_names)]
        self.states = {}  # correlation id -> {name: [units]}

    def execute(self, requests):
        xs, ids, ends, responses = [], [], [], [None] * len(requests)
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()  # [1, F]
            start = bool(pb_utils.get_input_tensor_by_name(r, "START").as_numpy().ravel()[0])
            end = bool(pb_utils.get_input_tensor_by_name(r, "END").as_numpy().ravel()[0])
            corrid = int(pb_utils.get_input_tensor_by_name(r, "CORRID").as_numpy().ravel()[0])
            if start or corrid not in self.states:
                self.states[corrid] = {n: np.zeros(self.units[n], np.float32) for n in self.state_names}
            xs.append(x.reshape(1, -1))
            ids.append(corrid)
            ends.append(end)
        feed = {"x": np.concatenate(xs).astype(np.float32)}
        for n in self.state_names:
            feed[n] = np.stack([self.states[i][n] for i in ids])  # [B, units]
        y, *new = self.session.run(self.outputs, feed)
        for k, (corrid, end) in enumerate(zip(ids, ends)):
            if end:
                self.states.pop(corrid, None)
            else:
                self.states[corrid] = {n: s[k] for n, s in zip(self.state_names, new)}
            responses[k] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("y", y[k:k + 1].copy())])
        return responses

    def finalize(self):
        self.states.clear()
