"""Official download sources, their published md5 checksums and sizes.

MNIST: the files of http://yann.lecun.com/exdb/mnist/ (mirrored on ossci-datasets S3, which torchvision uses);
Fashion-MNIST: Zalando's S3 bucket; CIFAR-10: Alex Krizhevsky's page (python version); TinyImageNet: the
CS231n site. MNIST / Fashion-MNIST files are stored as downloaded (.gz, read directly) in torchvision's layout;
the CIFAR-10 and TinyImageNet archives are extracted into the root.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resource:
    filename: str
    md5: str
    mirrors: tuple[str, ...]  # base URLs, tried in order; the file URL is base + filename
    subdir: str  # folder under root that receives the file
    extract: bool  # archive to unpack into root/subdir
    extracts_to: str = ""  # top-level folder the archive creates (holds the .sspnet-extracted marker)
    size: int | None = None  # published size in bytes: a download is aborted as soon as it grows beyond it


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
FMNIST_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

SOURCES: dict[str, tuple[Resource, ...]] = {
    "mnist": tuple(
        Resource(f, m, MNIST_MIRRORS, "MNIST/raw", False, size=n)
        for f, m, n in (
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542),
        )
    ),
    "fmnist": tuple(
        Resource(f, m, FMNIST_MIRRORS, "FashionMNIST/raw", False, size=n)
        for f, m, n in (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29515),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4422102),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5148),
        )
    ),
    "cifar10": (
        Resource(
            "cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
            ("https://www.cs.toronto.edu/~kriz/",),
            ".",
            True,
            "cifar-10-batches-py",
            170498071,
        ),
    ),
    "tiny": (
        Resource(
            "tiny-imagenet-200.zip",
            "90528d7ca1a48142e341f4ef8d21d0de",
            ("http://cs231n.stanford.edu/",),
            ".",
            True,
            "tiny-imagenet-200",
            248100043,
        ),
    ),
}
