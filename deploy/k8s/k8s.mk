# The cluster deployment (deploy/k8s/): its tools, the offline validation and the check against a real API server.
# Included by the Makefile; uses its $(BIN), $(PYTEST) and $(STAMP). Every tool lands in _build/tools/ (git-ignored),
# built once at the versions of deploy/local/versions.env.

.PHONY: k8s-tools k8s-validate k8s-verify

k8s-tools: $(STAMP)  ## build kustomize and kubeconform (Go module proxy) and the schemas, into _build/tools/
	$(BIN)/python deploy/k8s/k8stools.py tools

k8s-validate: k8s-tools  ## render every overlay; kubeconform (strict, k8s 1.34 + CRDs) and the security rules
	$(BIN)/python deploy/k8s/k8stools.py validate

k8s-verify: k8s-tools  ## every manifest against a real kube-apiserver + etcd on 127.0.0.1:16xxx (first build ~15 min)
	bash deploy/k8s/verify/kube-tools.sh
	SENSOROPS_K8S_VERIFY=1 $(PYTEST) -s tests/k8s
