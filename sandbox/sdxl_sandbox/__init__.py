"""The local sandbox: the whole product on one machine, for ``make demo`` and the end-to-end tests.

* ``kube_emulator`` — the Kubernetes API (KMock's emulator, extended with the server behaviours the
  operator relies on);
* ``local_executor`` — kubelet (``kubelet``), the Job and Deployment controllers
  (``job_controller``, ``deployment_controller``) and Service routing, running containers as local
  processes (``container_launch``, ``path_mapping``, ``local_process``, ``probes``) and talking to the
  API over HTTP (``api_client``);
* ``sandbox`` — :class:`~sdxl_sandbox.sandbox.Sandbox`: the API server (the emulator, or the real
  control plane of ``control_plane``), the real operator in its own process, and the executor,
  started and stopped together;
* ``command`` — ``sdxl-operator sandbox`` (``tables``, ``image_request``).

Development only, and in no image: it needs the ``dev`` extra (kmock, aiohttp). The sandbox drives the
operator and never the reverse: ``sdxl-operator sandbox`` looks ``command`` up by name, and an
import-linter contract keeps ``sdxl_operator`` from importing this package.
"""
