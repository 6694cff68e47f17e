"""The bad-input corpus: every kind of bad input a user can give, one case per line.

Each case runs one entry point (the pytest plugin through pytester, or ``resstream_assert.cli.main``)
and asserts its exit status (4: pytest usage error at start-up; 2: the ``resstream`` command), that
the message names the problem and says what to do (two regexes), and that nothing was decided:
no verdict in the output and no report file written. The files the cases point at (broken
checkpoints, images, baselines, factories) are made once per module from ``tests/wild``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

# pytester's in-process runs drop the modules a run imported; numpy/scipy extension modules cannot be
# imported twice in one process, so everything a run may import is imported here, once.
import numpy.fft  # noqa: F401
import onnx  # noqa: F401
import onnxruntime  # noqa: F401
import PIL.Image  # noqa: F401
import scipy.stats  # noqa: F401
import torchvision  # noqa: F401
from resstream_assert import zoo  # noqa: F401
import resstream_assert.capture  # noqa: F401
import resstream_assert.claims  # noqa: F401
import resstream_assert.discovery.stem  # noqa: F401
import resstream_assert.loading.onnx_file  # noqa: F401
import resstream_assert.pipeline  # noqa: F401
import resstream_assert.pytest_plugin.reporting  # noqa: F401
import resstream_assert.stimuli.probe  # noqa: F401
from resstream_assert.cli import main as cli_main
from tests.wild import architectures, checkpoints


class Case(NamedTuple):
    id: str
    entry: str  # "pytest" | "cli"
    args: tuple  # arguments; "{d}" is the folder of bad files
    code: int  # expected exit status
    problem: str  # regex the message must match: what was wrong
    fix: str  # regex the message must match: what to do
    ini: str = ""  # an ini file for the pytester run


W = "tests.wild.architectures"
F = "bad_factories"
CUDA = torch.cuda.is_available()

# fmt: off
CASES = [
    # --- options, checked at start-up (pytest exit status 4) -----------------------------------------------------
    Case("alpha-2", "pytest", ("--resstream-alpha", "2"), 4, r"--resstream-alpha 2\.0: must be strictly between 0 and 1", r"e\.g\. 0\.05"),
    Case("alpha-0", "pytest", ("--resstream-alpha", "0"), 4, r"--resstream-alpha 0\.0: must be strictly between 0 and 1", r"e\.g\. 0\.05"),
    Case("alpha-ini", "pytest", (), 4, r"--resstream-alpha 2\.0: must be strictly between 0 and 1", r"e\.g\. 0\.05", "resstream_alpha = 2"),
    Case("mostly-5", "pytest", ("--resstream-mostly", "5"), 4, r"--resstream-mostly 5\.0: must be a fraction in \(0, 1\]", r"1\.0 for every block"),
    Case("mostly-0", "pytest", ("--resstream-mostly", "0"), 4, r"--resstream-mostly 0\.0: must be a fraction", r"e\.g\. 0\.5"),
    Case("min-effect-negative", "pytest", ("--resstream-min-effect", "C3=-1"), 4, r"--resstream-min-effect C3=-1", r"finite number >= 0"),
    Case("min-effect-inf", "pytest", ("--resstream-min-effect", "C3=inf"), 4, r"--resstream-min-effect C3=inf", r"finite number >= 0"),
    Case("min-effect-no-claim", "pytest", ("--resstream-min-effect", "0.2"), 4, r"'0\.2' is not CLAIM=VALUE", r"e\.g\. C3=0\.2"),
    Case("min-effect-unknown-claim", "pytest", ("--resstream-min-effect", "C99=0.1"), 4, r"unknown claim 'C99'", r"known: C1, C2"),
    Case("min-effect-no-boundary", "pytest", ("--resstream-min-effect", "C11=0.1"), 4, r"C11 has no minimum effect", r"reference value"),
    Case("resamples-5", "pytest", ("--resstream-resamples", "5"), 4, r"--resstream-resamples 5: must be at least 99", r"smallest permutation p-value is 1/\(N\+1\)"),
    Case("seed-negative", "pytest", ("--resstream-seed", "-1"), 4, r"--resstream-seed -1: must be", r"0 or a positive whole number"),
    Case("seed-ini-text", "pytest", (), 4, r"ini key resstream_seed = 'abc': expected a whole number", r"fix the value in the ini file", "resstream_seed = abc"),
    Case("images-0", "pytest", ("--resstream-images", "0"), 4, r"--resstream-images 0: must be", r"positive whole number"),
    Case("batch-size-0", "pytest", ("--resstream-batch-size", "0"), 4, r"--resstream-batch-size 0: must be", r"positive whole number"),
    Case("device-tpu", "pytest", ("--resstream-device", "tpu"), 4, r"--resstream-device tpu:", r"must be cpu, cuda, cuda:N or mps"),
    Case("device-cuda-absent", "pytest", ("--resstream-device", "cuda:7" if CUDA else "cuda"), 4, r"this machine has (no usable CUDA device|CUDA devices cuda:0)", r"use --resstream-device cpu"),
    Case("input-size-0", "pytest", ("--resstream-input-size", "0"), 4, r"--resstream-input-size 0: must be", r"positive whole number"),
    Case("input-size-negative", "pytest", ("--resstream-input-size", "-3"), 4, r"--resstream-input-size -3: must be", r"positive whole number"),
    Case("claims-typo", "pytest", ("--resstream-claims", "C99"), 4, r"unknown claim id\(s\) \['C99'\]", r"registered: C1, C2, C3"),
    Case("claims-empty", "pytest", ("--resstream-claims", ","), 4, r"--resstream-claims ,: unknown claim id", r"registered: C1"),
    Case("providers-unknown", "pytest", ("--resstream-providers", "FooExecutionProvider"), 4, r"execution provider\(s\) FooExecutionProvider requested .* offers only .*CPUExecutionProvider", r"drop the option to run on CPU"),
    Case("backend-tensorflow", "pytest", ("--resstream-backend", "tensorflow"), 4, r"unknown backend tensorflow", r"use torch or onnx"),
    Case("lesion-unknown-key", "pytest", ("--resstream-lesion", "nope=1"), 4, r"Unknown lesion option 'nope'", r"known: .*n_random"),
    Case("lesion-one-random-set", "pytest", ("--resstream-lesion", "n_random=1"), 4, r"--resstream-lesion: n_random=1", r"at least 2 random sets"),
    Case("lesion-zoom-0", "pytest", ("--resstream-lesion", "zooms=0"), 4, r"--resstream-lesion: zooms=\(0,\)", r"zoom factors in \[1, 4\]"),
    Case("lesion-no-equals", "pytest", ("--resstream-lesion", "n_random"), 4, r"--resstream-lesion expects KEY=VALUE", r"KEY=VALUE"),
    Case("label-count", "pytest", ("--resstream-label", "a", "--resstream-label", "b"), 4, r"--resstream-label was given 2 time\(s\) for 1 model", r"one label per --resstream-model"),
    Case("label-same-file-name", "pytest", ("--resstream-model", W + ":resnet20@{d}/a/w.pth", "--resstream-model", W + ":resnet20@{d}/b/w.pth"), 4, r"two models get the label '.*resnet20@w\.pth'", r"name them apart with --resstream-label"),
    Case("label-with-space", "pytest", ("--resstream-label", "my model"), 4, r"--resstream-label 'my model'", r"without spaces or brackets"),
    Case("engine-unknown", "pytest", ("--resstream-engine", "tensorrt"), 4, r"--resstream-engine tensorrt:", r"must be auto, torch or onnxruntime"),
    Case("storage-unknown", "pytest", ("--resstream-storage", "bfloat16"), 4, r"--resstream-storage bfloat16:", r"must be auto, float16 or float32"),
    Case("shard-out-of-range", "pytest", ("--resstream-shard", "3/2"), 4, r"--resstream-shard 3/2: must be I/N", r"e\.g\. 2/4"),
    Case("shard-not-a-fraction", "pytest", ("--resstream-shard", "2"), 4, r"--resstream-shard 2: must be I/N", r"e\.g\. 2/4"),
    Case("stability-negative", "pytest", ("--resstream-stability", "-1"), 4, r"--resstream-stability -1: must be", r"0 or a positive whole number"),
    Case("stimuli-unknown", "pytest", ("--resstream-stimuli", "lucent"), 4, r"--resstream-stimuli lucent:", r"must be one of exemplars, featviz, both"),
    Case("channels-0", "pytest", ("--resstream-channels", "0"), 4, r"--resstream-channels 0: must be", r"positive whole number"),
    Case("featviz-plateau-negative", "pytest", ("--resstream-featviz-plateau", "-1"), 4, r"--resstream-featviz-plateau -1: must be", r"0 or a positive whole number"),
    Case("featviz-steps-negative", "pytest", ("--resstream-featviz-steps", "-1"), 4, r"--resstream-featviz-steps -1: must be", r"0 or a positive whole number"),
    Case("featviz-lr-0", "pytest", ("--resstream-featviz-lr", "0"), 4, r"--resstream-featviz-lr 0\.0: must be", r"finite number > 0"),
    Case("featviz-seeds-0", "pytest", ("--resstream-featviz-seeds", "0"), 4, r"--resstream-featviz-seeds 0: must be", r"positive whole number"),
    Case("featviz-regime-unknown", "pytest", ("--resstream-featviz-regime", "lucent"), 4, r"--resstream-featviz-regime lucent:", r"must be block .* or per-layer"),
    Case("featviz-jitter-negative", "pytest", ("--resstream-featviz-jitter", "-4"), 4, r"--resstream-featviz-jitter -4: must be", r"0 or a positive whole number"),
    Case("featviz-size-1", "pytest", ("--resstream-featviz-size", "1"), 4, r"--resstream-featviz-size 1: must be from 8 to 1024 px", r"default: the model's input size"),
    Case("featviz-size-30000", "pytest", ("--resstream-featviz-size", "30000"), 4, r"--resstream-featviz-size 30000: must be from 8 to 1024 px", r"default: the model's input size"),
    Case("featviz-device-tpu", "pytest", ("--resstream-featviz-device", "tpu"), 4, r"--resstream-featviz-device tpu:", r"must be cpu, cuda, cuda:N or mps"),
    Case("featviz-batch-size-0", "pytest", ("--resstream-featviz-batch-size", "0"), 4, r"--resstream-featviz-batch-size 0: must be", r"positive whole number"),
    Case("intervention-unknown-key", "pytest", ("--resstream-intervention", "chanels=8"), 4, r"Unknown intervention option 'chanels'", r"known: "),
    Case("lesion-precision", "pytest", ("--resstream-lesion", "precision=fp8"), 4, r"--resstream-lesion: precision=fp8", r"must be fp32 or bf16"),
    # issue 17: values that used to fail inside a test, or to give silently wrong numbers
    Case("intervention-factor-overflow", "pytest", ("--resstream-intervention", "factors=0.25,1,1e300"), 4, r"factors=\(0\.25, 1, 1e\+300\): 1e\+300 is outside 0\.001 to 1000", r"overflows float32"),
    Case("intervention-variants-twice", "pytest", ("--resstream-intervention", "variants=held,held"), 4, r"variants=\('held', 'held'\): each variant once", r"variants=held,scaled"),
    Case("stability-1", "pytest", ("--resstream-stability", "1"), 4, r"--resstream-stability 1: must be 0 \(off\) or from 36 to 1000", r"0 flips leaves the flip rate's 95% CI above"),
    Case("stability-1e9", "pytest", ("--resstream-stability", "1000000000"), 4, r"--resstream-stability 1000000000: must be 0 \(off\) or from 36 to 1000", r"e\.g\. 36"),
    Case("engine-torch-onnx-model", "pytest", ("--resstream-model", "{d}/nothere.onnx", "--resstream-engine", "torch"), 4, r"--resstream-engine torch: .*every model of this run runs on onnxruntime", r"Drop the option"),
    Case("shard-empty", "pytest", ("--resstream-shard", "2/2"), 4, r"--resstream-shard 2/2: the run has 1 model\(s\), so shard 2 gets none", r"Use at most 1 shard"),
    Case("safe-globals-not-a-class", "pytest", ("--resstream-safe-globals", "argparse"), 4, r"'argparse' is not a class name", r"give module\.Class, e\.g\. argparse\.Namespace"),
    # issue 21: preprocessing (the model's normalisation, the resize policy, class folders mapped to outputs)
    Case("mean-nan", "pytest", ("--resstream-mean", "nan", "0.5", "0.5", "--resstream-std", "0.2", "0.2", "0.2"), 4, r"--resstream-mean nan 0\.5 0\.5: must be 3 finite numbers", r"e\.g\. 0\.4914 0\.4822 0\.4465"),
    Case("mean-in-255-units", "pytest", ("--resstream-mean", "125.3", "123.0", "113.9", "--resstream-std", "0.2", "0.2", "0.2"), 4, r"--resstream-mean 125\.3 123\.0 113\.9: must lie in \[0, 1\]", r"divided by 255 first"),
    Case("std-zero", "pytest", ("--resstream-mean", "0.5", "0.5", "0.5", "--resstream-std", "0.2", "0", "0.2"), 4, r"--resstream-std 0\.2 0\.0 0\.2: must be > 0", r"divided by\s+255 first"),
    Case("mean-without-std", "pytest", ("--resstream-mean", "0.5", "0.5", "0.5"), 4, r"--resstream-mean was given without --resstream-std", r"give both, e\.g\. --resstream-std 0\.2470"),
    Case("mean-ini-two-values", "pytest", (), 4, r"--resstream-mean 0\.5 0\.5: must be 3 numbers, one per colour channel", r"e\.g\. 0\.4914 0\.4822 0\.4465", "resstream_mean = 0.5 0.5\nresstream_std = 0.2 0.2 0.2"),
    Case("std-ini-text", "pytest", (), 4, r"ini key resstream_std = 'a b c': expected three numbers", r"fix the value in the ini file", "resstream_mean = 0.5 0.5 0.5\nresstream_std = a b c"),
    Case("resize-unknown", "pytest", ("--resstream-resize", "fit"), 4, r"--resstream-resize fit: must be crop", r"or stretch \(the whole image"),
    Case("class-index-missing", "pytest", ("--resstream-class-index", "{d}/nowhere.json"), 4, r"--resstream-class-index .*nowhere\.json: does not exist", r"imagenet_class_index\.json"),
    Case("class-index-not-json", "pytest", ("--resstream-class-index", "{d}/base_junk.json"), 4, r"base_junk\.json: cannot be read as JSON", r"give a JSON file of the form \{\"0\": \[\"n01440764\""),
    Case("class-index-gap", "pytest", ("--resstream-class-index", "{d}/class_index_gap.json"), 4, r"the indices must be 0 to 1, each once \(missing: 1\)", r"one entry per output of the model"),
    Case("class-index-unknown-folder", "pytest", ("--resstream-probe", "{d}/probe_wnid", "--resstream-class-index", "{d}/class_index_other.json"), 4, r"class folder\(s\) n01440764 of the probe are not in the class-index file class_index_other\.json", r"rename the folders to the file's class ids"),
    Case("onnx-bad-normalisation", "pytest", ("--resstream-model", "{d}/bad_norm.onnx"), 4, r"resstream\.mean = 'a,b,c'.* is not a normalisation", r"--resstream-mean R G B --resstream-std R G B"),
    # --- reports and the baseline gate ----------------------------------------------------------------------------
    Case("compare-fail-unknown-quantity", "pytest", ("--resstream-baseline", "{d}/base_ok.json", "--resstream-compare-fail", "nosuchquantity:abs>0.1"), 4, r"has the quantity 'nosuchquantity', so the rule would compare nothing", r"Use one of: .*frac_skip"),
    Case("compare-fail-malformed", "pytest", ("--resstream-baseline", "{d}/base_ok.json", "--resstream-compare-fail", "rho>0.1"), 4, r"invalid --resstream-compare-fail expression 'rho>0\.1'", r"expected verdict \| missing \| decided \| NAME:abs>LIMIT"),
    Case("compare-fail-word-misspelled", "pytest", ("--resstream-baseline", "{d}/base_ok.json", "--resstream-compare-fail", "decide"), 4, r"invalid --resstream-compare-fail expression 'decide'", r"expected verdict \| missing \| decided \| NAME:abs>LIMIT"),
    Case("compare-fail-negative-limit", "pytest", ("--resstream-baseline", "{d}/base_ok.json", "--resstream-compare-fail", "rho:abs>-1"), 4, r"invalid --resstream-compare-fail expression 'rho:abs>-1'", r"LIMIT: a non-negative number"),
    Case("compare-fail-without-baseline", "pytest", ("--resstream-compare-fail", "rho:abs>0.1"), 4, r"a tolerance needs a baseline to compare with", r"add --resstream-baseline PATH"),
    Case("baseline-missing", "pytest", ("--resstream-baseline", "{d}/nowhere.json"), 4, r"--resstream-baseline .*nowhere\.json: no such file", r"create it with --resstream-update-baseline"),
    Case("baseline-not-json", "pytest", ("--resstream-baseline", "{d}/base_junk.json"), 4, r"base_junk\.json is not valid JSON", r"give a baseline written by --resstream-update-baseline"),
    Case("baseline-not-a-report", "pytest", ("--resstream-baseline", "{d}/base_noresults.json"), 4, r"is not a resstream_assert report: no top-level 'results' list", r"written by --resstream-update-baseline"),
    Case("baseline-directory", "pytest", ("--resstream-baseline", "{d}/somedir"), 4, r"--resstream-baseline .*somedir: is a directory", r"give the baseline JSON file"),
    Case("update-baseline-without-path", "pytest", ("--resstream-update-baseline",), 4, r"--resstream-update-baseline needs --resstream-baseline PATH", r"the file to write"),
    Case("update-baseline-under-a-file", "pytest", ("--resstream-baseline", "{d}/afile.txt/b.json", "--resstream-update-baseline"), 4, r"\(to be written\): cannot be created: .*afile\.txt is a file, not a folder", r"give a path in a folder"),
    Case("report-json-directory", "pytest", ("--resstream-report-json", "{d}/somedir"), 4, r"--resstream-report-json .*somedir: is a directory", r"give the path of the file to write"),
    Case("report-json-under-a-file", "pytest", ("--resstream-report-json", "{d}/afile.txt/r.json"), 4, r"--resstream-report-json .*: cannot be created: .*afile\.txt is a file", r"give a path in a folder"),
    Case("report-md-directory", "pytest", ("--resstream-report-md", "{d}/somedir"), 4, r"--resstream-report-md .*somedir: is a directory", r"give the path of the file to write"),
    Case("report-html-unwritable", "pytest", ("--resstream-report-html", "/proc/resstream.html"), 4, r"--resstream-report-html /proc/resstream\.html: cannot be created: the folder /proc is not writable", r"give a writable path"),
    Case("report-figures-file", "pytest", ("--resstream-report-figures", "{d}/afile.txt"), 4, r"--resstream-report-figures .*afile\.txt: is a file, not a folder", r"give a folder path"),
    Case("cache-dir-file", "pytest", ("--resstream-cache-dir", "{d}/afile.txt"), 4, r"--resstream-cache-dir .*afile\.txt: is a file, not a folder", r"give a folder path"),
    # issue 17: the gate passed when it must not
    Case("report-json-is-the-baseline", "pytest", ("--resstream-baseline", "{d}/base_ok.json", "--resstream-report-json", "{d}/base_ok.json"), 4, r"--resstream-report-json .*base_ok\.json: is the baseline file", r"Give the report another path"),
    Case("report-md-links-to-the-baseline", "pytest", ("--resstream-baseline", "{d}/base_ok.json", "--resstream-report-md", "{d}/link_to_base.json"), 4, r"--resstream-report-md .*link_to_base\.json: is the baseline file .*symlinks followed", r"Give the report another path"),
    Case("baseline-rows-not-dicts", "pytest", ("--resstream-baseline", "{d}/base_rows.json"), 4, r"base_rows\.json is not a resstream_assert report: result 1 .* has a row that is not an object", r"give a baseline written by --resstream-update-baseline"),
    Case("baseline-deeply-nested", "pytest", ("--resstream-baseline", "{d}/base_deep.json"), 4, r"base_deep\.json is not a resstream_assert report: its JSON is nested too deeply", r"written by --resstream-update-baseline"),
    Case("baseline-other-architecture", "pytest", ("--resstream-baseline", "{d}/base_other_arch.json"), 4, r"cannot be compared with the baseline .*model tests\.wild\.architectures:resnet20, the baseline's is zoo:bottleneck-synth64.*block list differs", r"write a baseline for this model and these settings with --resstream-update-baseline"),
    Case("baseline-other-probe-size", "pytest", ("--resstream-baseline", "{d}/base_64_images.json"), 4, r"cannot be compared with the baseline .*images: baseline 64, this run 16", r"only another probe size can be allowed, with --resstream-allow-probe-size"),
    Case("baseline-other-alpha", "pytest", ("--resstream-baseline", "{d}/base_64_images.json", "--resstream-images", "64", "--resstream-alpha", "0.01"), 4, r"claim_options\.alpha: baseline 0\.05, this run 0\.01", r"Run with the baseline's settings"),
    Case("cache-dir-links-to-root", "pytest", ("--resstream-cache-dir", "{d}/root_link"), 4, r"--resstream-cache-dir .*root_link: its real location / is the root folder", r"a run never writes there"),
    Case("report-json-links-into-etc", "pytest", ("--resstream-report-json", "{d}/etc_link.json"), 4, r"--resstream-report-json .*etc_link\.json: its real location /etc/.* is inside the system folder /etc", r"give a path in a project or temporary folder"),
    # --- probe images ---------------------------------------------------------------------------------------------
    Case("probe-missing", "pytest", ("--resstream-probe", "{d}/noprobe"), 4, r"--resstream-probe .*noprobe: does not exist", r"give a folder of images"),
    Case("probe-is-a-file", "pytest", ("--resstream-probe", "{d}/afile.txt"), 4, r"--resstream-probe .*afile\.txt: is a file, not a folder", r"the folder that holds the images"),
    Case("probe-empty", "pytest", ("--resstream-probe", "{d}/probe_empty"), 4, r"probe_empty contains no images", r"Add images or point at another folder"),
    Case("probe-tiny-image", "pytest", ("--resstream-probe", "{d}/probe_tiny"), 4, r"tiny\.png .* is 4x4 px: too small for a 32 px input", r"use larger images, or test at a smaller --resstream-input-size"),
    Case("probe-truncated-jpeg", "pytest", ("--resstream-probe", "{d}/probe_cut"), 4, r"cut\.jpg .* cannot be read", r"Remove or replace the file"),
    # --- model specs ----------------------------------------------------------------------------------------------
    Case("spec-empty-weights", "pytest", ("--resstream-model", "torchvision:resnet18@"), 4, r"empty weights path after '@'", r"drop the '@' for a random \(seeded\) initialization"),
    Case("spec-two-controls", "pytest", ("--resstream-model", "torchvision:resnet18+nc-id+nc-perm"), 4, r"asks for 2 negative controls \(\+nc-id\+nc-perm\)", r"one '\+nc-\.\.\.' suffix each"),
    Case("spec-unknown-control", "pytest", ("--resstream-model", "torchvision:resnet18+nc-zero"), 4, r"Unknown negative control '\+nc-zero'", r"Known controls: \+nc-id"),
    Case("spec-grammar", "pytest", ("--resstream-model", "resnet18"), 4, r"Cannot read model spec 'resnet18'", r"Use one of: 'zoo:NAME'"),
    Case("spec-unknown-zoo", "pytest", ("--resstream-model", "zoo:resnet19"), 4, r"resnet19", r"resnet18-synth96"),
    Case("spec-unknown-torchvision", "pytest", ("--resstream-model", "torchvision:resnet19"), 4, r"Unknown torchvision architecture 'resnet19'", r"Similar names: resnet18"),
    Case("spec-unknown-timm", "pytest", ("--resstream-model", "timm:resnet19q"), 4, r"Unknown timm architecture 'resnet19q'", r"timm\.list_models"),
    Case("spec-unknown-factory", "pytest", ("--resstream-model", "no_such_pkg.models:build"), 4, r"Cannot import factory 'no_such_pkg\.models:build'", r"importable 'package\.module:callable'"),
    Case("factory-raises", "pytest", ("--resstream-model", F + ":boom"), 4, r"bad_factories:boom\(\) raised TypeError: boom: bad width", r"Fix the factory or the arguments it is given"),
    Case("factory-returns-int", "pytest", ("--resstream-model", F + ":returns_int"), 4, r"returned int, not a torch\.nn\.Module", r"Make it return the model"),
    Case("not-a-residual-network", "pytest", ("--resstream-model", "torchvision:vgg11"), 4, r"No residual block found", r"pick a residual network"),
    Case("onnx-missing", "pytest", ("--resstream-model", "{d}/nothere.onnx"), 4, r"ONNX file .*nothere\.onnx' does not exist", r"resstream export SPEC"),
    Case("onnx-with-control", "pytest", ("--resstream-model", "{d}/nothere.onnx+nc-id"), 4, r"negative controls edit a torch model", r"--resstream-backend onnx"),
    Case("onnx-not-onnx", "pytest", ("--resstream-model", "{d}/junk.onnx"), 4, r"junk\.onnx' is not a readable ONNX model", r"export it again"),
    Case("onnx-fixed-batch", "pytest", ("--resstream-model", "{d}/fixed_batch.onnx"), 4, r"fixed_batch\.onnx' takes a fixed batch of 1 image", r"dynamic_axes=\{'input': \{0: 'batch'\}\}"),
    Case("onnx-custom-domain", "pytest", ("--resstream-model", "{d}/custom_op.onnx"), 4, r"uses the custom operator my\.ops::Swish .*from the domain 'my\.ops'", r"standard ONNX operators only"),
    # --- weights files --------------------------------------------------------------------------------------------
    Case("weights-missing", "pytest", ("--resstream-model", W + ":resnet20@{d}/nowhere.pth"), 4, r"nowhere\.pth' does not exist", r"Check the path after '@'"),
    Case("weights-directory", "pytest", ("--resstream-model", W + ":resnet20@{d}/directory_path/resnet20-cifar10"), 4, r"is a directory, not a weights file", r"name one of them, e\.g\. '@.*model\.safetensors'"),
    Case("weights-empty", "pytest", ("--resstream-model", W + ":resnet20@{d}/empty_file/resnet20.pth"), 4, r"is empty \(0 bytes\)", r"Download or save it again"),
    Case("weights-text", "pytest", ("--resstream-model", W + ":resnet20@{d}/text_file/resnet20.pth"), 4, r"is a text file, not a PyTorch checkpoint", r"Point the spec's '@WEIGHTS' at the weights file"),
    Case("weights-junk", "pytest", ("--resstream-model", W + ":resnet20@{d}/junk_bytes/resnet20.pth"), 4, r"is not a PyTorch checkpoint or safetensors file", r"download or save the file again"),
    Case("weights-list", "pytest", ("--resstream-model", W + ":resnet20@{d}/pickled_list/resnet20.pth"), 4, r"holds a list of \d+ items, not a state dict", r"torch\.save\(model\.state_dict\(\), path\)"),
    Case("weights-git-lfs", "pytest", ("--resstream-model", W + ":resnet20@{d}/git_lfs_pointer/resnet20.pth"), 4, r"is a Git LFS pointer, not the weights", r"git lfs pull"),
    Case("weights-html", "pytest", ("--resstream-model", W + ":resnet20@{d}/html_page/resnet20.pth"), 4, r"is an HTML page, not the weights", r"Download the file itself"),
    Case("weights-truncated", "pytest", ("--resstream-model", W + ":resnet20@{d}/truncated_pth/resnet20.pth"), 4, r"truncated or corrupt", r"Download or save it again"),
    Case("weights-bad-safetensors", "pytest", ("--resstream-model", W + ":resnet20@{d}/bad.safetensors"), 4, r"not a readable safetensors file", r"download or save the file again"),
    Case("weights-dict-without-state", "pytest", ("--resstream-model", W + ":resnet20@{d}/nodict.pth"), 4, r"holds a dict without a state dict: its keys are 'epoch', 'acc'", r"Save model\.state_dict\(\)"),
    Case("weights-nan", "pytest", ("--resstream-model", W + ":resnet20@{d}/nan_weight/resnet20_diverged.pth"), 4, r"non-finite values in 1 tensor: layer2\.1\.conv1\.weight \(1 NaN of 576 values\)", r"use an earlier checkpoint"),
    Case("weights-inf", "pytest", ("--resstream-model", W + ":resnet20@{d}/inf.pth"), 4, r"layer1\.0\.bn1\.running_var \(1 inf of 4 values\)", r"use an earlier checkpoint"),
    Case("weights-wrong-architecture", "pytest", ("--resstream-model", W + ":resnet20@{d}/wrong_architecture/resnet18.pth"), 4, r"does not fit the architecture: \d+ missing keys", r"spec names the architecture the checkpoint was trained with"),
    Case("weights-whole-model-untrusted", "pytest", ("--resstream-model", W + ":ResNet18@{d}/whole_model_pickle/resnet18_full.pth"), 4, r"holds pickled Python objects", r"pass --resstream-trust-pickle"),
    Case("weights-torchscript", "pytest", ("--resstream-model", W + ":resnet20@{d}/scripted.pth"), 4, r"scripted\.pth' is a TorchScript archive", r"torch\.save\(torch\.jit\.load\('scripted\.pth'\)\.state_dict\(\)"),
    Case("weights-quantized", "pytest", ("--resstream-model", W + ":resnet20@{d}/quantized.pth"), 4, r"holds a quantized model's state dict", r"Test the float model before quantization"),
    Case("weights-lightning-namespace", "pytest", ("--resstream-model", W + ":resnet20@{d}/namespace.ckpt"), 4, r"holds pickled Python objects \(class argparse\.Namespace\), which torch's safe loader", r"--resstream-safe-globals argparse\.Namespace"),
    Case("weights-lightning-extra-key", "pytest", ("--resstream-model", W + ":resnet20@{d}/extra_key.ckpt"), 4, r"keys are there under the prefix 'model\.' .*criterion\.weight", r"save the model's own state dict"),
    Case("weights-whole-model-other-arch", "pytest", ("--resstream-model", "torchvision:vgg11@{d}/whole_model_pickle/resnet18_full.pth", "--resstream-trust-pickle"), 4, r"holds a pickled ResNet .* not the architecture the spec names \(vgg11, a VGG\)", r"Name the architecture the model was saved from"),
    # --- the resstream command (exit status 2) --------------------------------------------------------------------
    Case("cli-sites-input-size-negative", "cli", ("sites", W + ":resnet20", "--input-size=-3"), 2, r"argument --input-size: -3: must be a positive number of pixels", r"left out for the model's own size"),
    Case("cli-sites-input-size-0", "cli", ("sites", W + ":resnet20", "--input-size", "0"), 2, r"argument --input-size: 0: must be a positive number", r"left out for the model's own size"),
    Case("cli-sites-input-size-text", "cli", ("sites", W + ":resnet20", "--input-size", "big"), 2, r"'big' is not a whole number of pixels", r"e\.g\. 32 or 224"),
    Case("cli-sites-unknown-arch", "cli", ("sites", "torchvision:resnet19"), 2, r"Unknown torchvision architecture 'resnet19'", r"Similar names: resnet18"),
    Case("cli-sites-empty-weights", "cli", ("sites", "torchvision:resnet18@"), 2, r"empty weights path after '@'", r"drop the '@'"),
    Case("cli-sites-two-controls", "cli", ("sites", "torchvision:resnet18+nc-id+nc-perm"), 2, r"asks for 2 negative controls", r"one '\+nc-\.\.\.' suffix each"),
    Case("cli-sites-not-residual", "cli", ("sites", "torchvision:vgg11"), 2, r"No residual block found", r"pick a residual network"),
    Case("cli-sites-whole-model", "cli", ("sites", W + ":ResNet18@{d}/whole_model_pickle/resnet18_full.pth"), 2, r"holds pickled Python objects", r"pass --trust-pickle\."),
    Case("cli-sites-nan", "cli", ("sites", W + ":resnet20@{d}/nan_weight/resnet20_diverged.pth"), 2, r"layer2\.1\.conv1\.weight \(1 NaN", r"use an earlier checkpoint"),
    Case("cli-sites-factory-raises", "cli", ("sites", F + ":boom"), 2, r"raised TypeError: boom: bad width", r"Fix the factory"),
    Case("cli-export-to-directory", "cli", ("export", W + ":resnet20", "{d}/somedir"), 2, r"Output path .*somedir' is a directory", r"Give the file to write, e\.g\. '.*model\.onnx'"),
    Case("cli-export-under-a-file", "cli", ("export", W + ":resnet20", "{d}/afile.txt/m.onnx"), 2, r"Cannot create the folder of output path", r"Give a path in a writable folder"),
    Case("cli-export-opset-3", "cli", ("export", W + ":resnet20", "{d}/out/m.onnx", "--opset", "3"), 2, r"argument --opset: 3: torch exports ONNX opsets 7 to \d+", r"leave it out for the exporter's default"),
    Case("cli-export-opset-torchscript-max", "cli", ("export", W + ":resnet20", "{d}/out/m.onnx", "--opset", "23"), 2, r"ONNX opset 23 cannot be written by the torchscript exporter", r"use an opset from 7 to 20"),
    Case("cli-export-input-size-0", "cli", ("export", W + ":resnet20", "{d}/out/m.onnx", "--input-size", "0"), 2, r"argument --input-size: 0: must be a positive number", r"left out for the model's own size"),
    Case("cli-export-onnx-spec", "cli", ("export", "{d}/junk.onnx", "{d}/out/m.onnx"), 2, r"is already an ONNX file", r"export takes a torch model spec"),
    Case("cli-export-whole-model", "cli", ("export", W + ":ResNet18@{d}/whole_model_pickle/resnet18_full.pth", "{d}/out/m.onnx"), 2, r"holds pickled Python objects", r"pass --trust-pickle\."),
    Case("cli-export-not-residual", "cli", ("export", "torchvision:vgg11", "{d}/out/v.onnx"), 2, r"No residual block found", r"pick a residual network"),
    Case("cli-export-mean-two-values", "cli", ("export", W + ":resnet20", "{d}/out/m.onnx", "--mean", "0.5", "0.5"), 2, r"argument --mean: expected 3 arguments", r"--mean R G B"),
    Case("cli-export-mean-without-std", "cli", ("export", W + ":resnet20", "{d}/out/m.onnx", "--mean", "0.5", "0.5", "0.5"), 2, r"--mean was given without --std", r"give both, e\.g\. --std 0\.2470"),
    Case("cli-export-std-zero", "cli", ("export", W + ":resnet20", "{d}/out/m.onnx", "--mean", "0.5", "0.5", "0.5", "--std", "0.2", "0", "0.2"), 2, r"--std 0\.2 0\.0 0\.2: must be > 0", r"divided by\s+255 first"),
    Case("cli-export-dev-null", "cli", ("export", W + ":resnet20", "/dev/null"), 2, r"Output path '/dev/null' does not end in \.onnx", r"Give a \.onnx file name"),
    Case("cli-featviz-unknown-block", "cli", ("featviz", W + ":resnet20", "--block", "layer9.9", "--out", "{d}/out/g.png", "--input-size", "32", "--no-cache"), 2, r"--block layer9\.9: no such block", r"this model's blocks are layer1\.0"),
    Case("cli-featviz-txt-output", "cli", ("featviz", W + ":resnet20", "--block", "layer1.0", "--out", "{d}/out/g.txt"), 2, r"'.*g\.txt' does not end in \.png", r"Give a \.png file name"),
    Case("cli-featviz-out-under-a-file", "cli", ("featviz", W + ":resnet20", "--block", "layer1.0", "--out", "{d}/afile.txt/g.png"), 2, r"--out .*: cannot be created: .*afile\.txt is a file", r"give a path in a folder"),
    Case("cli-featviz-channels-negative", "cli", ("featviz", W + ":resnet20", "--block", "layer1.0", "--out", "{d}/out/g.png", "--channels", "-1"), 2, r"--channels -1: must be a positive whole number", r"positive whole number"),
    Case("cli-featviz-channels-0", "cli", ("featviz", W + ":resnet20", "--block", "layer1.0", "--out", "{d}/out/g.png", "--channels", "0"), 2, r"--channels 0: must be a positive whole number", r"positive whole number"),
    Case("cli-featviz-steps-negative", "cli", ("featviz", W + ":resnet20", "--block", "layer1.0", "--out", "{d}/out/g.png", "--steps", "-1"), 2, r"--steps -1: must be 0 or a positive whole number", r"positive whole number"),
    Case("cli-featviz-lr-nan", "cli", ("featviz", W + ":resnet20", "--block", "layer1.0", "--out", "{d}/out/g.png", "--lr", "nan"), 2, r"--lr nan: must be a finite number > 0", r"finite number > 0"),
    Case("cli-merge-missing-shard", "cli", ("report", "merge", "{d}/shard1.json", "--baseline", "{d}/merged_base.json"), 2, r"not one whole run: shard 2/2 is missing; model r50 has no result", r"Merge every shard of the run \(or pass --allow-incomplete"),
    Case("cli-merge-empty-shard", "cli", ("report", "merge", "{d}/empty_shard.json"), 2, r"not one whole run: shard 1/2 is missing; .*the reports hold no claim result", r"Merge every shard"),
    Case("cli-merge-other-version", "cli", ("report", "merge", "{d}/shard1.json", "{d}/shard2_other_version.json"), 2, r"other settings .*resstream_assert version 0\.0\.1", r"only the shards of one run can be merged"),
    Case("cli-merge-results-not-dicts", "cli", ("report", "merge", "{d}/base_results_ints.json"), 2, r"base_results_ints\.json is not a resstream_assert report: result 1 is a int", r"not an object"),
    Case("cli-merge-deeply-nested", "cli", ("report", "merge", "{d}/base_deep.json"), 2, r"base_deep\.json is not a resstream_assert report: its JSON is nested", r"nested"),
    Case("cli-merge-compare-fail-without-baseline", "cli", ("report", "merge", "{d}/shard1.json", "{d}/shard2.json", "--compare-fail", "rho:abs>0.1"), 2, r"--compare-fail rho:abs>0\.1: a tolerance needs a baseline", r"add --baseline PATH"),
    Case("cli-merge-json-is-the-baseline", "cli", ("report", "merge", "{d}/shard1.json", "{d}/shard2.json", "--baseline", "{d}/merged_base.json", "--json", "{d}/merged_base.json"), 2, r"--json .*merged_base\.json: is the baseline \(--baseline\) \(symlinks followed\)", r"Give another path"),
    Case("cli-merge-all-or-nothing", "cli", ("report", "merge", "{d}/shard1.json", "{d}/shard2.json", "--json", "{d}/out/m.json", "--md", "{d}/afile.txt/m.md"), 2, r"--md .*afile\.txt/m\.md: cannot be created", r"give a path in a folder"),
    Case("cli-merge-other-architecture", "cli", ("report", "merge", "{d}/shard1.json", "{d}/shard2.json", "--baseline", "{d}/merged_base_other_arch.json"), 2, r"cannot be compared with the baseline .*r50\[torch\]: model torchvision:resnet50, the baseline's is torchvision:resnet18", r"only another probe size can be allowed, with --allow-probe-size"),
    Case("cli-run-bad-option", "cli", ("run", "--no-cache", "--", "--resstream-alpha", "2"), 4, r"--resstream-alpha 2\.0: must be strictly between 0 and 1", r"e\.g\. 0\.05"),
    # --- issue 22: every bad form of a factory spec (a module from the current folder, or a .py file) -------------
    *[Case(f"{entry}-{name}", entry, (*(("--resstream-model",) if entry == "pytest" else ("sites",)), spec), code,
           problem, fix) for entry, code in (("pytest", 4), ("cli", 2)) for name, spec, problem, fix in (
        ("spec-path-without-py", "{d}/" + F + ":boom", r"is a path, not a module name Python can import",
         r"Name the file with its \.py suffix \('.*bad_factories\.py:boom'\)"),
        ("spec-relative-module", "." + F + ":boom", r"'\.bad_factories' is relative, not a module name",
         r"'bad_factories:boom', from the folder that holds bad_factories\.py"),
        ("spec-py-without-factory", "{d}/" + F + ".py", r"Cannot read model spec '.*bad_factories\.py'",
         r"A Python file needs the factory to call: '.*bad_factories\.py:make_net'"),
        ("spec-py-empty-factory", "{d}/" + F + ".py:", r"Cannot read model spec '.*bad_factories\.py:'",
         r"Name what to build after the ':', e\.g\. '.*bad_factories\.py:make_net'"),
        ("spec-py-missing-file", "{d}/no_such_net.py:make_net", r"the file '.*no_such_net\.py' does not exist",
         r"Give the path of the Python file that defines the factory"),
        ("spec-py-is-a-folder", "{d}/folder.py:make_net", r"the file '.*folder\.py' is a folder",
         r"Give the path of the Python file"),
        ("spec-py-missing-name", "{d}/" + F + ".py:make_net", r"bad_factories\.py has no 'make_net'\. It defines boom, "
         r"returns_int", r"name the one that returns the model"),
        ("spec-module-missing-name", F + ":make_net", r"bad_factories has no 'make_net'",
         r"name the one that returns the model \('bad_factories:NAME'\)"),
        ("spec-module-not-found", "no_such_net:make_net", r"No module named 'no_such_net'; looked in the current folder",
         r"run from the folder that holds no_such_net\.py, name the file"),
        ("spec-py-syntax-error", "{d}/syntax_error_net.py:make_net", r"importing .*syntax_error_net\.py raised "
         r"SyntaxError: .*\(line 2\)", r"Fix the module so that it imports"),
        ("spec-py-raises-on-import", "{d}/raising_net.py:make_net", r"importing .*raising_net\.py raised "
         r"RuntimeError: no GPU here", r"Fix the module so that it imports"),
        ("spec-py-exits-on-import", "{d}/exiting_net.py:make_net", r"importing .*exiting_net\.py raised SystemExit",
         r"Fix the module so that it imports"),
        ("spec-module-missing-dependency", "needs_dep_net:make_net", r"importing needs_dep_net raised "
         r"ModuleNotFoundError: No module named 'no_such_dependency'", r"needs 'no_such_dependency', which is not "
         r"installed: install it"),
        ("spec-weights-without-architecture", "{d}/a/w.pth", r"Cannot read model spec '.*w\.pth'",
         r"A weights file needs the architecture it fits, before an '@'"),
        ("spec-nothing-before-at", "torchvision:@{d}/a/w.pth", r"names nothing to build before '@'",
         r"Name the architecture, e\.g\. 'torchvision:resnet18'"),
    )],
]
# fmt: on

FACTORIES = '''
import torch.nn as nn

def boom(num_classes=10):
    with open(__file__ + ".calls", "a") as fh:  # counted across in-process pytest runs
        fh.write(f"{num_classes}\\n")
    raise TypeError("boom: bad width")

def returns_int():
    return 3
'''


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    """One folder with every bad file the cases point at."""
    from PIL import Image

    from resstream_assert.report.collect import write_report
    from tests.report_synth import make_result

    d = tmp_path_factory.mktemp("bad")
    model = checkpoints.trained_like()
    for name in ("directory_path", "empty_file", "text_file", "junk_bytes", "pickled_list", "git_lfs_pointer",
                 "html_page", "truncated_pth", "nan_weight", "wrong_architecture", "whole_model_pickle"):
        (d / name).mkdir()
        checkpoints.CHECKPOINTS[name](model, d / name)
    state = checkpoints.state_of(model)
    for sub in ("a", "b"):
        (d / sub).mkdir()
        torch.save(state, d / sub / "w.pth")
    inf = dict(state)
    inf["layer1.0.bn1.running_var"] = inf["layer1.0.bn1.running_var"].clone()
    inf["layer1.0.bn1.running_var"][2] = float("inf")
    torch.save(inf, d / "inf.pth")
    torch.save({"epoch": 3, "acc": 0.91}, d / "nodict.pth")
    (d / "bad.safetensors").write_bytes(b"\x00" * 64)
    (d / "junk.onnx").write_bytes(b"not an onnx graph")
    (d / "afile.txt").write_text("a file, not a folder\n")
    (d / "somedir").mkdir()
    (d / "probe_empty").mkdir()
    (d / "probe_wnid" / "n01440764").mkdir(parents=True)
    Image.new("RGB", (48, 48), (90, 30, 200)).save(d / "probe_wnid" / "n01440764" / "fish.png")
    (d / "class_index_gap.json").write_text('{"0": ["n01443537", "goldfish"], "2": ["n01484850", "shark"]}')
    (d / "class_index_other.json").write_text('{"0": ["n01443537", "goldfish"], "1": ["n01484850", "shark"]}')
    for folder, gen in (("probe_tiny", checkpoints.tiny_4x4), ("probe_cut", checkpoints.truncated_jpeg)):
        (d / folder).mkdir()
        gen(d / folder)
        Image.new("RGB", (48, 48), (90, 30, 200)).save(d / folder / "fine.png")
    write_report({"results": [make_result("r18", "C3").to_dict()]}, d / "base_ok.json")
    (d / "base_junk.json").write_text("{not json")
    (d / "base_noresults.json").write_text('{"claims": []}')
    (d / f"{F}.py").write_text(FACTORIES)
    (d / "folder.py").mkdir()
    (d / "syntax_error_net.py").write_text("import os\ndef make_net(:\n    pass\n")
    (d / "raising_net.py").write_text("raise RuntimeError('no GPU here')\n")
    (d / "exiting_net.py").write_text("import sys\nsys.exit(3)\n")
    (d / "needs_dep_net.py").write_text("import no_such_dependency\n")
    _issue17_files(d, model)
    return d


def _issue17_files(d: Path, model) -> None:
    """The files of the issue 17 cases: baselines of other models or settings, links, checkpoints, ONNX, shards."""
    import json

    from resstream_assert.config import build_run_config
    from resstream_assert.report.collect import ReportCollector, write_report
    from tests.report_synth import make_result

    (d / "link_to_base.json").symlink_to(d / "base_ok.json")
    (d / "root_link").symlink_to("/")
    (d / "etc_link.json").symlink_to("/etc/resstream-issue17-never-written.json")
    write_report({"results": [dict(make_result("r18", "C3").to_dict(), rows=[1, 2])]}, d / "base_rows.json")
    (d / "base_deep.json").write_text('{"results": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (d / "base_results_ints.json").write_text('{"results": [3]}')
    # Baselines with the harness's config (W:resnet20, 16 images, 32 px): of another architecture; at 64 images.
    config = build_run_config({"model": [W + ":resnet20"], "images": 16, "input-size": 32}).to_dict()
    blocks = [["layer1.0", 256], ["layer2.0", 512], ["layer3.0", 1024], ["layer4.0", 2048]]
    other = {"architecture": "zoo:bottleneck-synth64", "input_size": 64, "blocks": blocks, "probe": "0" * 64,
             "images": 16}
    write_report({"config": config, "model_info": {"zoo:bottleneck-synth64[torch]": other},
                  "results": [make_result("zoo:bottleneck-synth64", "C3").to_dict()]}, d / "base_other_arch.json")
    same = {"architecture": W + ":resnet20", "input_size": 32, "blocks": [], "probe": "0" * 64, "images": 64}
    write_report({"config": dict(config, images=64), "model_info": {W + ":resnet20[torch]": same},
                  "results": [make_result(W + ":resnet20", "C3").to_dict()]}, d / "base_64_images.json")
    _checkpoints(d, model)
    _onnx_files(d)
    # Shard reports of a run of r18 and r50 (report merge).
    info = {f"{m}[torch]": {"architecture": f"torchvision:{a}", "input_size": 224, "blocks": [["layer1.0", 64]],
                            "probe": "1" * 64, "images": 64} for m, a in (("r18", "resnet18"), ("r50", "resnet50"))}
    shards = []
    for i, m in ((1, "r18"), (2, "r50")):
        col = ReportCollector(config={"models": ["r18", "r50"], "seed": 0, "shard": [i, 2]}, seed=0)
        for c in ("C1", "C3"):
            col.add(make_result(m, c), f"t.py::test[{m}-{c}]")
        shards.append(dict(col.to_json(), model_info={f"{m}[torch]": info[f"{m}[torch]"]}))
        write_report(shards[-1], d / f"shard{i}.json")
    write_report(dict(shards[1], resstream_assert="0.0.1"), d / "shard2_other_version.json")
    from resstream_assert.report.merge import merge_reports

    merged = merge_reports(shards)
    write_report(merged, d / "merged_base.json")
    wrong = {**info, "r50[torch]": dict(info["r50[torch]"], architecture="torchvision:resnet18")}
    write_report(dict(merged, model_info=wrong), d / "merged_base_other_arch.json")
    empty = ReportCollector(config={"models": ["r18"], "seed": 0, "shard": [2, 2]}, seed=0).to_json()
    (d / "empty_shard.json").write_text(json.dumps(empty))


def _checkpoints(d: Path, model) -> None:
    """TorchScript, a quantized state dict, Lightning files with an argparse.Namespace and with a loss's weight."""
    import argparse
    import warnings

    state = checkpoints.state_of(model)
    torch.jit.save(torch.jit.trace(model.eval(), torch.zeros(1, 3, 32, 32)), d / "scripted.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notes
        quantized = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(4, 4)),
                                                           {torch.nn.Linear}, dtype=torch.qint8)
        torch.save(quantized.state_dict(), d / "quantized.pth")
    lightning = {f"model.{k}": v for k, v in state.items()}
    torch.save({"state_dict": lightning, "hyper_parameters": {"args": argparse.Namespace(lr=0.1)}, "epoch": 3},
               d / "namespace.ckpt")
    torch.save({"state_dict": dict(lightning, **{"criterion.weight": torch.ones(10)}), "epoch": 3},
               d / "extra_key.ckpt")


def _onnx_files(d: Path) -> None:
    """A graph with a fixed batch of 1 (torch's default export) and one with a custom-domain operator."""
    from onnx import TensorProto, helper, save

    def graph(batch, domain: str, op: str):
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 32, 32])
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3, 32, 32])
        node = helper.make_node(op, ["input"], ["logits"], domain=domain, name="act")
        opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
        return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=opsets)

    save(graph(1, "", "Relu"), str(d / "fixed_batch.onnx"))
    bad_norm = graph("N", "", "Relu")
    for key, value in (("resstream.mean", "a,b,c"), ("resstream.std", "0.2,0.2,0.2")):
        bad_norm.metadata_props.add(key=key, value=value)
    save(bad_norm, str(d / "bad_norm.onnx"))
    save(graph("N", "my.ops", "Swish"), str(d / "custom_op.onnx"))


_VERDICT = re.compile(r"\b(holds|fails|inconclusive|not_applicable)\b|resstream claims|residual blocks")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_refused_with_a_clear_message(case: Case, bad_dir: Path, pytester: pytest.Pytester, capsys,
                                                   monkeypatch):
    args = [a.replace("{d}", str(bad_dir)) for a in case.args]
    monkeypatch.syspath_prepend(str(bad_dir))  # bad_factories
    sys.modules.pop(F, None)
    calls = bad_dir / f"{F}.py.calls"
    calls.unlink(missing_ok=True)
    report = pytester.path / "out" / "report.json"
    if case.entry == "pytest":
        if case.ini:
            pytester.makeini(f"[pytest]\n{case.ini}\n")
        small = [] if any(a.startswith("--resstream-model") for a in args) else \
            ["--resstream-model", f"{W}:resnet20"]
        result = pytester.runpytest("--pyargs", "resstream_assert.suite", "-p", "no:cacheprovider",
                                    "--resstream-no-cache", "--resstream-images", "16", "--resstream-input-size", "32",
                                    *small, *args, *([] if "--resstream-report-json" in args else
                                                     ["--resstream-report-json", str(report)]))
        code, out, err = int(result.ret), result.stdout.str(), result.stderr.str()
    else:
        try:
            code = cli_main(args)
        except SystemExit as exc:  # argparse refuses bad arguments by exiting
            code = exc.code
        captured = capsys.readouterr()
        out, err = captured.out, captured.err
    message = err + out
    assert code == case.code, message
    assert re.search(case.problem, message, re.S), f"the message does not name the problem:\n{message}"
    assert re.search(case.fix, message, re.S), f"the message does not say what to do:\n{message}"
    assert "Traceback" not in message, message
    assert not _VERDICT.search(out), f"a verdict or a result was printed:\n{out}"
    assert not report.exists() and not (bad_dir / "out").exists() and not (bad_dir / "somedir" / "model.onnx").exists()
    if case.id.endswith("factory-raises"):
        assert calls.read_text().split() == ["10"], "the factory must be called once"


def test_the_corpus_is_large_and_each_case_is_distinct():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.entry, c.args, c.ini) for c in CASES}) == len(CASES)


def test_a_failing_factory_is_called_once(bad_dir, monkeypatch):
    """A factory that raises TypeError used to be called a second time without arguments."""
    from resstream_assert.errors import ModelSpecError
    from resstream_assert.pipeline import load_model

    monkeypatch.syspath_prepend(str(bad_dir))
    sys.modules.pop(F, None)
    calls = bad_dir / f"{F}.py.calls"
    calls.unlink(missing_ok=True)
    with pytest.raises(ModelSpecError, match="raised TypeError: boom"):
        load_model(f"{F}:boom", input_size=32)
    assert calls.read_text().split() == ["10"]  # no checkpoint: called once, with its own default
    torch.save(checkpoints.state_of(checkpoints.trained_like(num_classes=7)), bad_dir / "seven.pth")
    with pytest.raises(ModelSpecError, match=r"bad_factories:boom\(num_classes=7\) raised TypeError"):
        load_model(f"{F}:boom@{bad_dir / 'seven.pth'}", input_size=32)
    assert calls.read_text().split() == ["10", "7"]  # with a checkpoint: once, with its classifier size


def test_the_fixture_files_are_what_the_cases_say(bad_dir):
    assert architectures.INPUT_SIZE == 32
    assert (bad_dir / "empty_file" / "resnet20.pth").stat().st_size == 0
    assert (bad_dir / "probe_tiny" / "tiny.png").exists() and (bad_dir / "probe_cut" / "cut.jpg").exists()


@pytest.mark.filterwarnings("ignore:Setting .keep_initializers_as_inputs=False:UserWarning")
def test_a_failed_export_says_why_in_a_few_lines(tmp_path, capfd):
    """TorchScript's exporter printed its whole IR graph (hundreds of lines, at the C++ level) before the
    error; option-A shortcuts (strided slices) cannot be exported at opset 7."""
    code = cli_main(["export", f"{W}:resnet20", str(tmp_path / "m.onnx"), "--opset", "7", "--input-size", "32"])
    err = capfd.readouterr().err
    assert code == 2
    assert re.search(r"could not export .*step!=1 is currently not supported", err)
    assert "Try the other exporter (--exporter)" in err
    assert "graph(" not in err and len(err.splitlines()) < 10, err[:2000]
    assert not (tmp_path / "m.onnx").exists()


def test_the_cli_prints_its_warnings_once_in_its_own_words(monkeypatch, capsys):
    """A guessed input size is printed as a warning naming the subcommand's flag; other warnings pass
    through (re-emitting them inside the recording context used to loop forever)."""
    import warnings

    import resstream_assert.cli as cli

    real = cli._sites

    def sites(args):
        warnings.warn("an unrelated library warning", UserWarning)
        return real(args)

    monkeypatch.setattr(cli, "_sites", sites)
    with pytest.warns(UserWarning, match="an unrelated library warning"):
        assert cli_main(["sites", f"{W}:resnet20"]) == 0
    out, err = capsys.readouterr()
    assert "9 residual blocks, input 32px" in out
    assert err.count("resstream: warning:") == 1 and "--input-size N" in err and "--resstream-" not in err
