{{/*
RBAC rules of the operator, exactly the permissions declared in operator/sdxl_operator/manifests/permissions.py
(tests/contract/chart/test_chart_rbac.py compares them). No wildcards. The replicas run Kopf with
--peering: the peering rule of the mode (cluster-wide or per namespace) is granted with the framework's.
*/}}

{{/* Framework, cluster-scoped: always in a ClusterRole. */}}
{{- define "sdxl-operator.rules.framework.clusterScoped" -}}
# framework: Kopf discovers the served custom resources
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# framework: Kopf observes namespaces when started with namespace patterns
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* Framework, peering of the replicas serving the whole cluster: in the ClusterRole. */}}
{{- define "sdxl-operator.rules.framework.clusterPeering" -}}
# framework: Kopf peering between operator replicas (cluster-wide)
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/* Framework, peering of the replicas serving a list of namespaces: in each namespace's Role. */}}
{{- define "sdxl-operator.rules.framework.namespacePeering" -}}
# framework: Kopf peering between operator replicas (per namespace)
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}

{{/* Framework, namespaced: in the ClusterRole (cluster-wide) or each watched namespace's Role. */}}
{{- define "sdxl-operator.rules.framework.namespaced" -}}
# framework: Kopf and the handlers post Events on the custom resources
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Application: our custom resources and the children the handlers create and read. */}}
{{- define "sdxl-operator.rules.application" -}}
# application: watch the custom resources; Kopf patches its annotations and finalizer
- apiGroups: ["sdxl.io"]
  resources: ["sdxlfinetunes", "sdxldeployments"]
  verbs: ["get", "list", "watch", "patch"]
# application: write status through the status subresource
- apiGroups: ["sdxl.io"]
  resources: ["sdxlfinetunes/status", "sdxldeployments/status"]
  verbs: ["get", "patch"]
# application: the resolved-spec ConfigMap of each workload; the adapters ConfigMap of a set of fine-tunes, patched as the set changes; watched (its own only, by label) to follow changes
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
# application: training and compile Jobs; watched (its own only, by label) so status follows them
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
# application: read Job and server pods to explain Pending/failed states; watched (its own only, by label)
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# application: read the training progress lines from the pod log
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# application: read a Job's FailedCreate Events: why it has no pod (quota, admission)
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list"]
# application: create the workload ServiceAccount in a namespace that has none (never modified afterwards)
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create"]
# application: check that the claims a workload pod mounts exist
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get"]
# application: the inference Service of an SDXLDeployment; watched (its own only, by label) to follow changes
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# application: the inference Deployment; watched (its own only, by label) so status follows its replicas
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# application: optional autoscaling of the inference Deployment; watched (its own only, by label) to follow changes
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# application: the KEDA ScaledObject of an SDXLDeployment when the chart enables KEDA (deleted when switching back)
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["get", "create", "patch", "delete"]
# application: the NetworkPolicy of the inference pods (deleted when network policies are turned off); watched (its own only, by label)
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# application: the PodDisruptionBudget of an SDXLDeployment serving with several pods (deleted when one is left)
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
{{- end }}
