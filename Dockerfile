# specllm container (minimal for now): the CUDA build, digest pin, TeX and preflight entrypoint
# come with the container issue. Build: docker build -t specllm . ; run: see README.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONHASHSEED=0 SOURCE_DATE_EPOCH=1735689600
RUN apt-get update && apt-get install -y --no-install-recommends make git \
        texlive-latex-base texlive-latex-recommended texlive-fonts-recommended texlive-science \
        lmodern latexmk poppler-utils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /work
COPY . .
RUN make setup
CMD ["make", "reproduce", "PROFILE=small"]
