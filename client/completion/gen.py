#!/usr/bin/env python3
"""Write seedctl's bash or zsh completion from its command table.

usage: gen.py bash|zsh TABLE OUTPUT

TABLE is what seedctl-table (table.c) prints from client/commands.c: one line
a command ("C", words, arguments, options) and one of global options ("G"),
tab-separated. Both scripts are self-contained (no bash-completion library,
no _arguments spec): the command words, each command's options and what its
arguments are (job names from `seedctl --json job list`, files, directories,
command words for help) come from the table, so a command added there is
completed without touching this file.
"""
import sys


def read_table(path):
    cmds, globals_ = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "C":
                words, args, opts = parts[1], parts[2], parts[3] if len(parts) > 3 else ""
                cmds.append({
                    "words": words.split(),
                    "args": [a.strip("[]") for a in args.split()],
                    "opts": [o.split("=")[0] for o in opts.split()],
                    "valued": {o.split("=")[0]: o.split("=")[1] for o in opts.split() if "=" in o},
                })
            elif parts[0] == "G":
                globals_ = parts[1].split()
    if not cmds:
        sys.exit("gen.py: no commands in %s" % path)
    return cmds, globals_


# Commands whose NAME is a new job: nothing to offer (ARG_JOB in the table either way).
NEW_NAME = {"job create"}


def unique(seq):
    out = []
    for x in seq:
        if x not in out:
            out.append(x)
    return out


def model(cmds, globals_):
    """What both shells need, as words."""
    first = unique(c["words"][0] for c in cmds)
    groups = {w: unique(c["words"][1] for c in cmds if c["words"][0] == w and len(c["words"]) > 1)
              for w in first}
    groups = {k: v for k, v in groups.items() if v}
    valued = {}
    for c in cmds:
        valued.update(c["valued"])
    for g in globals_:
        if "=" in g:
            name, meta = g.split("=")
            valued[name] = meta
    gopts = [g.split("=")[0] for g in globals_]
    return first, groups, valued, gopts


HEADER = "# Generated from seedctl's command table (client/commands.c) by client/completion/gen.py.\n"

# Shared shell logic; @...@ are filled in per shell. Word lists are plain space-separated strings.
BASH = r'''# bash completion for seedctl(1).
@HEADER@
_seedctl_jobs()
{
	local sock=() i
	for ((i = 1; i < COMP_CWORD; i++)); do
		[[ ${COMP_WORDS[i]} == --socket ]] && sock=(--socket "${COMP_WORDS[i + 1]}")
	done
	"${COMP_WORDS[0]}" "${sock[@]}" --json job list 2>/dev/null |
		sed -n 's/^    "name": "\([A-Za-z0-9._-]*\)",\{0,1\}$/\1/p'
}

_seedctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local valued=" @VALUED@ " globals="@GLOBALS@"
	local -a pos=()
	local i w skip=0 vopt="" cmd="" nargs opts="" args="" meta
	COMPREPLY=()
	# bash splits "--staging=DIR" at the "=" (COMP_WORDBREAKS): "=" keeps the value pending.
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ $w == = && -n $vopt ]]; then skip=1; continue; fi
		if ((skip)); then skip=0; vopt=""; continue; fi
		vopt=""
		case $w in
		--*=* | --) ;;
		-*) [[ $valued == *" $w "* ]] && skip=1 && vopt=$w ;;
		*) pos+=("$w") ;;
		esac
	done
	if ((skip)); then
		case " @DIRS@ " in *" $vopt "*) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null; return ;; esac
		case " @FILES@ " in *" $vopt "*) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null; return ;; esac
		return
	fi
	if ((${#pos[@]} == 0)); then
		if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$globals" -- "$cur")); return; fi
		COMPREPLY=($(compgen -W "@FIRST@" -- "$cur"))
		return
	fi
	case ${pos[0]} in
@GROUPS_BASH@
	*) cmd=${pos[0]}; nargs=$((${#pos[@]} - 1)) ;;
	esac
	case $cmd in
@CMDS_BASH@
	*) return ;;
	esac
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$opts $globals" -- "$cur"))
		return
	fi
	args=($args)
	meta=${args[nargs]}
	case $meta in
	NAME) COMPREPLY=($(compgen -W "$(_seedctl_jobs)" -- "$cur")) ;;
	DIR) COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null ;;
	PATH | F | DEV) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
	COMMAND)
		if ((nargs == 0)); then
			COMPREPLY=($(compgen -W "@FIRST@" -- "$cur"))
		fi ;;
	"")
		# help's second word: a group's commands.
		if [[ $cmd == help ]] && ((nargs == 1)); then
			case ${pos[1]} in
@HELP_BASH@
			esac
		fi ;;
	esac
}
complete -F _seedctl seedctl
'''

ZSH = r'''#compdef seedctl
# zsh completion for seedctl(1).
@HEADER@
local cur=${words[CURRENT]} prev=${words[CURRENT-1]}
local valued=" @VALUED@ "
local -a globals pos args
local i w skip=0 vopt="" cmd="" nargs=0 opts="" meta
globals=(@GLOBALS@)
for ((i = 2; i < CURRENT; i++)); do
	w=${words[i]}
	if ((skip)); then skip=0; vopt=""; continue; fi
	vopt=""
	case $w in
	(--*=*|--) ;;
	(-*) [[ $valued == *" $w "* ]] && skip=1 && vopt=$w ;;
	(*) pos+=("$w") ;;
	esac
done
if ((skip)); then
	case " @DIRS@ " in (*" $vopt "*) _files -/; return ;; esac
	case " @FILES@ " in (*" $vopt "*) _files; return ;; esac
	return 1
fi
if ((${#pos} == 0)); then
	if [[ $cur == -* ]]; then compadd -- $globals; return; fi
	compadd -- @FIRST@
	return
fi
case ${pos[1]} in
@GROUPS_ZSH@
(*) cmd=${pos[1]}; nargs=$((${#pos} - 1)) ;;
esac
case $cmd in
@CMDS_ZSH@
(*) return 1 ;;
esac
if [[ $cur == -* ]]; then
	compadd -- ${=opts} $globals
	return
fi
args=(${=args_s})
meta=${args[nargs + 1]}
case $meta in
(NAME)
	local sock=() j
	for ((j = 2; j < CURRENT; j++)); do
		[[ ${words[j]} == --socket ]] && sock=(--socket "${words[j + 1]}")
	done
	compadd -- ${(f)"$(${words[1]} $sock --json job list 2>/dev/null |
		sed -n 's/^    "name": "\([A-Za-z0-9._-]*\)",\{0,1\}$/\1/p')"} ;;
(DIR) _files -/ ;;
(PATH|F|DEV) _files ;;
(COMMAND) ((nargs == 0)) && compadd -- @FIRST@ ;;
("")
	if [[ $cmd == help ]] && ((nargs == 1)); then
		case ${pos[2]} in
@HELP_ZSH@
		esac
	fi ;;
esac
'''


def render(shell, cmds, globals_):
    first, groups, valued, gopts = model(cmds, globals_)
    dirs = [o for o, m in valued.items() if m == "DIR"]
    files = [o for o, m in valued.items() if m in ("PATH", "F", "DEV")]
    gb, gz, cb, cz, hb, hz = [], [], [], [], [], []
    for g, subs in groups.items():
        gb.append('\t%s)\n\t\tif ((${#pos[@]} == 1)); then COMPREPLY=($(compgen -W "%s" -- "$cur")); '
                  'return; fi\n\t\tcmd="%s ${pos[1]}"; nargs=$((${#pos[@]} - 2)) ;;' % (g, " ".join(subs), g))
        gz.append('(%s)\n\tif ((${#pos} == 1)); then compadd -- %s; return; fi\n'
                  '\tcmd="%s ${pos[2]}"; nargs=$((${#pos} - 2)) ;;' % (g, " ".join(subs), g))
        hb.append('\t\t\t%s) COMPREPLY=($(compgen -W "%s" -- "$cur")) ;;' % (g, " ".join(subs)))
        hz.append('\t\t(%s) compadd -- %s ;;' % (g, " ".join(subs)))
    for c in cmds:
        name = " ".join(c["words"])
        args = " ".join("NEWNAME" if a == "NAME" and name in NEW_NAME else a for a in c["args"])
        cb.append('\t"%s") opts="%s"; args="%s" ;;' % (name, " ".join(c["opts"]), args))
        cz.append('("%s") opts="%s"; args_s="%s" ;;' % (name, " ".join(c["opts"]), args))
    text = BASH if shell == "bash" else ZSH
    subst = {
        "HEADER": HEADER.rstrip("\n"),
        "VALUED": " ".join(valued),
        "GLOBALS": " ".join(gopts),
        "FIRST": " ".join(first),
        "DIRS": " ".join(dirs),
        "FILES": " ".join(files),
        "GROUPS_BASH": "\n".join(gb),
        "GROUPS_ZSH": "\n".join(gz),
        "CMDS_BASH": "\n".join(cb),
        "CMDS_ZSH": "\n".join(cz),
        "HELP_BASH": "\n".join(hb),
        "HELP_ZSH": "\n".join(hz),
    }
    for k, v in subst.items():
        text = text.replace("@%s@" % k, v)
    if shell == "zsh":
        text = text.replace('local -a globals pos args\n', 'local -a globals pos args\nlocal args_s=""\n')
    return text


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("bash", "zsh"):
        sys.exit(__doc__.splitlines()[2])
    cmds, globals_ = read_table(sys.argv[2])
    with open(sys.argv[3], "w", encoding="utf-8") as f:
        f.write(render(sys.argv[1], cmds, globals_))
    return 0


if __name__ == "__main__":
    sys.exit(main())
