# The radzero image (docs/cloud.md): Ray's GPU image of the pinned Ray release and Python, with the
# project and its pinned dependencies on top. Every node of cluster.yaml runs it.
#   docker build -t ghcr.io/<you>/radzero:0.1.0 . && docker push ghcr.io/<you>/radzero:0.1.0
FROM rayproject/ray:2.60.0-py311-gpu

# The base image's user ray (uid 1000, home /home/ray, Python in /home/ray/anaconda3), named by
# its uid so that Kubernetes' runAsNonRoot can check it; pip installs into that user's Python.
USER 1000
# Made by ray itself (a directory WORKDIR creates may belong to root): the install writes its
# build files here.
RUN mkdir /home/ray/radzero
WORKDIR /home/ray/radzero

# What the install reads first, so that a change to configs or jobs reuses the installed layer.
COPY --chown=ray:users pyproject.toml constraints.txt README.md ./
COPY --chown=ray:users radzero/ radzero/
# torch comes from the package index's default build, the CUDA one on Linux (constraints.txt).
RUN python -m pip install --no-cache-dir -c constraints.txt .

COPY --chown=ray:users configs/ configs/
COPY --chown=ray:users jobs/ jobs/
COPY --chown=ray:users deploy/ deploy/
# The base image's entrypoint and command stay as they are (Ray's launcher and KubeRay expect them).
