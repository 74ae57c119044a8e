# The two commands of README.md. Both install what they need on a fresh machine.
.PHONY: demo test cluster-up cluster-down crds manifests

demo:  ## set everything up and run the local end-to-end demo
	bash hack/install-python.sh
	bash hack/build-control-plane.sh >/dev/null
	.venv/bin/python -m stemgen_dev.demo $(DEMO_ARGS)

test:  ## set everything up and run the whole test suite
	bash hack/test.sh $(PYTEST_ARGS)

cluster-up:
	bash hack/install-python.sh && .venv/bin/stemgen-dev cluster up

cluster-down:
	.venv/bin/stemgen-dev cluster down

crds:  ## regenerate every copy of the CRD from the contract
	.venv/bin/python -m stemgen_api.crd

manifests:  ## regenerate the CRD copies and manifests/ from the contract and the chart
	.venv/bin/python -m stemgen_dev.manifests
