#!/bin/sh
# Idempotent set-up for `make demo` and `make test` on Debian 12 (run as root, or with sudo).
# Installs the Debian packages failback's lab and tests need when they are missing,
# then creates .venv and installs failback into it when pyproject.toml changed.
set -eu

cd "$(dirname "$0")/.."

# postgresql-15-wal2json: the output plugin of the slots that capture diverged
# transactions (Debian 12's PostgreSQL is 15); bind9: the authoritative DNS server and
# resolver of `failback lab up --dns` (named, started by the lab on free ports)
DEB_PACKAGES="python3 python3-venv python3-pip postgresql postgresql-15-wal2json haproxy pgbouncer prometheus iproute2 procps util-linux chromium openssh-client openssh-server sudo etcd-server bind9 systemd"

missing=""
for pkg in $DEB_PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "setup: need root (or sudo) to install:$missing" >&2; exit 1
        fi
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # The lab and the tests start their own PostgreSQL, HAProxy, PgBouncer and Prometheus
    # on free ports: keep the packages' system services from starting on install.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # The netns lab runs its own sshd per namespace. When we are the ones installing
    # openssh-server, the system's sshd must not start (now or at boot): Debian's unit,
    # socket and init script honour this file. A machine that already had sshd keeps it.
    case " $missing " in *" openssh-server "*)
        $SUDO mkdir -p /etc/ssh
        $SUDO touch /etc/ssh/sshd_not_to_be_run ;;
    esac
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
    # The tests (and the control-plane lab) start their own etcd members on free ports:
    # the package's system etcd must not start at boot either.
    case " $missing " in *" etcd-server "*)
        $SUDO systemctl disable etcd >/dev/null 2>&1 || true ;;
    esac
    # The same for BIND: the DNS lab starts its own named processes; the package's
    # named (port 53) must not start at boot.
    case " $missing " in *" bind9 "*)
        $SUDO systemctl disable named >/dev/null 2>&1 || true ;;
    esac
fi

# Debian's own python3 (installed above) unless $PYTHON names another: it is the one a
# Debian 12 machine has, and its optimised build starts the CLI ~13% faster than a
# self-compiled interpreter first on PATH (pyenv's), which the suite's ~1,200 CLI
# processes feel.
if [ -z "${PYTHON:-}" ]; then
    if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=python3; fi
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "setup: installing failback and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install -q -e '.[test]'
    touch .venv/.installed
fi
