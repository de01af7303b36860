# Set-up and entry points. Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test unit-test kafka clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Fetch the Apache Kafka jars from Maven Central once (needs java and mvn).
kafka: $(STAMP)
	$(VENV)/bin/python deploy/kafka_broker.py fetch

# The main job: local broker, both workers, sample feed and logs, alerts printed.
demo: kafka
	$(VENV)/bin/python -m service.demo

# The whole suite: unit tests, then integration tests against a real broker.
test: kafka
	$(VENV)/bin/pytest -p no:cacheprovider

unit-test: $(STAMP)
	$(VENV)/bin/pytest -p no:cacheprovider tests/unit

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
