"""CI files `shipway init` writes: a GitHub Actions workflow and a multi-stage Azure Pipelines file.

Both do the same thing: `shipway run` on every push to main (record, JUnit
report and HTML report kept as artifacts), and `shipway release` on a nightly
schedule. Credentials come from the CI's secrets or its identity (OIDC,
service connections), never from the repository.
"""

from __future__ import annotations

from shipway.scaffold.answers import Answers

NIGHTLY_CRON = "0 2 * * *"
RUN_FILES = ("shipway-build.json", "shipway-run.xml", "shipway-run.html")
RELEASE_FILES = ("shipway-release.json", "shipway-release.xml", "shipway-release.html")
RUN_COMMAND = "shipway run --output shipway-build.json --junit shipway-run.xml --report shipway-run.html"
RELEASE_COMMAND = (
    "shipway release --output shipway-release.json --junit shipway-release.xml --report shipway-release.html"
)
LOG_FORMAT = " --log-format json"

_AZURE = {"azure_blob", "acr", "aks"}
_AWS = {"s3", "ecr", "eks"}


def _kinds(a: Answers) -> set[str]:
    return {a.store, a.registry, a.orchestrator}


def _github_credentials(a: Answers) -> str:
    steps = ""
    if _kinds(a) & _AZURE:
        steps += (
            "      # OIDC: a federated credential on an Entra app for this repository; no secret is stored.\n"
            "      - uses: azure/login@v2\n"
            "        with:\n"
            "          client-id: ${{ secrets.AZURE_CLIENT_ID }}\n"
            "          tenant-id: ${{ secrets.AZURE_TENANT_ID }}\n"
            "          subscription-id: ${{ secrets.AZURE_SUBSCRIPTION_ID }}\n"
        )
    if _kinds(a) & _AWS:
        steps += (
            "      # OIDC: an IAM role trusting token.actions.githubusercontent.com for this repository.\n"
            "      - uses: aws-actions/configure-aws-credentials@v4\n"
            "        with:\n"
            "          role-to-assume: ${{ secrets.AWS_ROLE_ARN }}\n"
            "          aws-region: ${{ vars.AWS_REGION }}\n"
        )
    if a.orchestrator == "kubernetes" and not _kinds(a) & _AWS:
        steps += (
            "      - name: kubeconfig from a secret\n"
            "        if: github.event_name != 'push'\n"
            "        run: |\n"
            "          mkdir -p ~/.kube && printf '%s' \"$KUBECONFIG_DATA\" > ~/.kube/config\n"
            "        env:\n"
            "          KUBECONFIG_DATA: ${{ secrets.KUBECONFIG }}\n"
        )
    return steps


def _github_env(a: Answers) -> str:
    """The job's environment: every variable shipway.yaml reads, from secrets or repository variables."""
    names: dict[str, str] = {}
    if a.registry == "oci":
        names.update(
            SHIPWAY_REGISTRY="vars.SHIPWAY_REGISTRY",
            SHIPWAY_REGISTRY_USERNAME="secrets.SHIPWAY_REGISTRY_USERNAME",
            SHIPWAY_REGISTRY_PASSWORD="secrets.SHIPWAY_REGISTRY_PASSWORD",
        )
    if a.store == "azure_blob":
        names["AZURE_STORAGE_ACCOUNT_URL"] = "vars.AZURE_STORAGE_ACCOUNT_URL"
    if a.registry == "acr":
        names["ACR_LOGIN_SERVER"] = "vars.ACR_LOGIN_SERVER"
    if a.orchestrator == "aks":
        names.update(
            AZURE_SUBSCRIPTION_ID="secrets.AZURE_SUBSCRIPTION_ID",
            AKS_RESOURCE_GROUP="vars.AKS_RESOURCE_GROUP",
            AKS_CLUSTER="vars.AKS_CLUSTER",
        )
    if a.store == "s3":
        names["S3_BUCKET"] = "vars.S3_BUCKET"
    if _kinds(a) & _AWS:
        names["AWS_REGION"] = "vars.AWS_REGION"
    if a.registry == "ecr":
        names["AWS_ACCOUNT_ID"] = "vars.AWS_ACCOUNT_ID"
    if a.orchestrator == "eks":
        names["EKS_CLUSTER"] = "vars.EKS_CLUSTER"
    return "".join(f"  {k}: ${{{{ {v} }}}}\n" for k, v in names.items())


def github_workflow(a: Answers) -> str:
    """.github/workflows/shipway.yml: run on push, release nightly, records and reports as artifacts."""
    creds = _github_credentials(a)
    setup = (
        "      - uses: actions/checkout@v4\n"
        "      - uses: actions/setup-python@v5\n"
        "        with:\n"
        f'          python-version: "{a.python_version}"\n'
        f"      - run: pip install '{a.pip_spec}'\n"
        f"{creds}"
    )

    def upload(name: str, files: tuple[str, ...]) -> str:
        paths = "".join(f"            {f}\n" for f in files)
        return (
            "      - uses: actions/upload-artifact@v4\n"
            "        if: always()\n"
            "        with:\n"
            f"          name: {name}\n"
            "          if-no-files-found: ignore\n"
            "          path: |\n"
            f"{paths}"
        )

    return (
        f"# shipway for {a.name}, written by `shipway init`: every push to main is tested, built,\n"
        "# verified and pushed (shipway run); every night the newest verified build is released\n"
        "# (shipway release; a no-op when it is already live). Records and reports are artifacts.\n"
        "name: shipway\n"
        "on:\n"
        "  push:\n"
        "    branches: [main]\n"
        "  schedule:\n"
        f'    - cron: "{NIGHTLY_CRON}"\n'
        "  workflow_dispatch: {}\n"
        "permissions:\n"
        "  contents: read\n"
        "  id-token: write   # OIDC tokens for azure/login and aws-actions/configure-aws-credentials\n"
        "concurrency:\n"
        "  group: shipway-${{ github.workflow }}-${{ github.event_name == 'push' && 'run' || 'release' }}\n"
        "  cancel-in-progress: false\n"
        "env:\n"
        "  DOCKER_BUILDKIT: '0'\n"
        f"{_github_env(a)}"
        "jobs:\n"
        "  run:\n"
        "    if: github.event_name == 'push'\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        f"{setup}"
        f"      - run: {RUN_COMMAND}{LOG_FORMAT}\n"
        f"{upload('shipway-run', RUN_FILES)}"
        "  release:\n"
        "    if: github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'\n"
        "    runs-on: ubuntu-latest\n"
        "    environment: production\n"
        "    steps:\n"
        f"{setup}"
        f"      - run: {RELEASE_COMMAND}{LOG_FORMAT}\n"
        f"{upload('shipway-release', RELEASE_FILES)}"
    )


def azure_pipeline(a: Answers) -> str:
    """azure-pipelines.yml: a build stage on commits, a release stage on a nightly schedule."""
    azure = bool(_kinds(a) & _AZURE)
    connection_vars = (
        "  # Azure Resource Manager service connections (Project settings > Service connections).\n"
        "  # The build signs in as one identity for the model store and the registry:\n"
        "  storageAcrConnection: shipway-build   # Storage Blob Data Reader (models) + AcrPush (ACR)\n"
        "  aksConnection: shipway-release        # AKS Cluster User Role + RBAC Writer in the namespace\n"
        "  # Non-secret settings: pipeline variables ACR_LOGIN_SERVER, AZURE_STORAGE_ACCOUNT_URL,\n"
        "  # AZURE_SUBSCRIPTION_ID, AKS_RESOURCE_GROUP, AKS_CLUSTER.\n"
        if azure
        else "  # SHIPWAY_REGISTRY_USERNAME/PASSWORD: secret pipeline variables (Library or pipeline settings).\n"
    ) + "  DOCKER_BUILDKIT: '0'\n"

    def shipway_step(command: str, connection: str, display: str) -> str:
        if azure:
            # AzureCLI@2 logs in with the service connection; DefaultAzureCredential picks the login up.
            return (
                "          - task: AzureCLI@2\n"
                f"            displayName: {display}\n"
                "            inputs:\n"
                f"              azureSubscription: ${{{{ variables.{connection} }}}}\n"
                "              scriptType: bash\n"
                "              scriptLocation: inlineScript\n"
                f"              inlineScript: {command}\n"
                "            env:\n"
                "              ACR_LOGIN_SERVER: $(ACR_LOGIN_SERVER)\n"
                "              AZURE_STORAGE_ACCOUNT_URL: $(AZURE_STORAGE_ACCOUNT_URL)\n"
                "              AZURE_SUBSCRIPTION_ID: $(AZURE_SUBSCRIPTION_ID)\n"
                "              AKS_RESOURCE_GROUP: $(AKS_RESOURCE_GROUP)\n"
                "              AKS_CLUSTER: $(AKS_CLUSTER)\n"
            )
        return (
            f"          - script: {command}\n"
            f"            displayName: {display}\n"
            "            env:\n"
            "              SHIPWAY_REGISTRY: $(SHIPWAY_REGISTRY)\n"
            "              SHIPWAY_REGISTRY_USERNAME: $(SHIPWAY_REGISTRY_USERNAME)\n"
            "              SHIPWAY_REGISTRY_PASSWORD: $(SHIPWAY_REGISTRY_PASSWORD)   # secrets are mapped explicitly\n"
        )

    setup = (
        "          - checkout: self\n"
        "          - task: UsePythonVersion@0\n"
        "            inputs:\n"
        f'              versionSpec: "{a.python_version}"\n'
        f"          - script: pip install '{a.pip_spec}'\n"
        "            displayName: install shipway\n"
    )

    def publish(name: str, junit: str, files: tuple[str, ...]) -> str:
        return (
            "          - task: PublishTestResults@2\n"
            "            condition: always()\n"
            "            inputs:\n"
            "              testResultsFormat: JUnit\n"
            f"              testResultsFiles: {junit}\n"
            "          - task: CopyFiles@2\n"
            "            condition: always()\n"
            "            inputs:\n"
            "              Contents: |\n"
            f"{''.join(f'                {f}{chr(10)}' for f in files)}"
            "              TargetFolder: $(Build.ArtifactStagingDirectory)\n"
            "          - task: PublishPipelineArtifact@1\n"
            "            condition: always()\n"
            "            inputs:\n"
            "              targetPath: $(Build.ArtifactStagingDirectory)\n"
            f"              artifact: {name}-$(System.JobAttempt)\n"
        )

    return (
        f"# shipway for {a.name}, written by `shipway init`: the build stage runs on every commit to\n"
        "# main (test, model, build, verify, push); the release stage runs on the nightly schedule\n"
        "# (newest verified build -> live, checked, rolled back on failure).\n"
        "trigger:\n"
        "  branches:\n"
        "    include: [main]\n"
        "pr: none\n"
        "schedules:\n"
        f'  - cron: "{NIGHTLY_CRON}"\n'
        "    displayName: nightly release\n"
        "    branches:\n"
        "      include: [main]\n"
        '    always: "true"          # run even without new commits (the schema wants a string)\n'
        "variables:\n"
        f"{connection_vars}"
        "pool:\n"
        "  vmImage: ubuntu-latest\n"
        "stages:\n"
        "  - stage: build\n"
        "    displayName: shipway run\n"
        "    condition: ne(variables['Build.Reason'], 'Schedule')\n"
        "    jobs:\n"
        "      - job: run\n"
        "        steps:\n"
        f"{setup}"
        f"{shipway_step(RUN_COMMAND + LOG_FORMAT, 'storageAcrConnection', 'shipway run')}"
        f"{publish('shipway-run', 'shipway-run.xml', RUN_FILES)}"
        "  - stage: release\n"
        "    displayName: shipway release\n"
        "    dependsOn: []\n"
        "    condition: eq(variables['Build.Reason'], 'Schedule')\n"
        "    jobs:\n"
        "      - job: release\n"
        "        steps:\n"
        f"{setup}"
        f"{shipway_step(RELEASE_COMMAND + LOG_FORMAT, 'aksConnection', 'shipway release')}"
        f"{publish('shipway-release', 'shipway-release.xml', RELEASE_FILES)}"
    )
