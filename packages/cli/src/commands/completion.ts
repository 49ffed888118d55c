import { EXIT, UsageError, type CliIo } from '../base.js';
import { type Command, parse, requirePositionals, wantsHelp } from '../command.js';
import { commandList } from './list.js';

const usage = `Usage: piimg completion bash|zsh|fish

Prints a completion script for the shell: commands, their options, and file
names for the other arguments.

  bash:  piimg completion bash > /etc/bash_completion.d/piimg
         (or: source <(piimg completion bash) in ~/.bashrc)
  zsh:   piimg completion zsh > "\${fpath[1]}/_piimg"
         (or: source <(piimg completion zsh) in ~/.zshrc, after compinit)
  fish:  piimg completion fish > ~/.config/fish/completions/piimg.fish

Options:
  -h, --help    this help`;

interface OptionSpec {
  short?: string;
  long: string;
  /** Takes a value (a file name for FILE). */
  value?: string;
}

/** Reads `-o, --output FILE` as written in commandList. */
export function parseOptionSpec(text: string): OptionSpec {
  const match = /^(?:-(\w), )?--([a-z][a-z-]*)(?: ([A-Z]+))?$/.exec(text);
  if (!match) throw new Error(`bad option spec '${text}'`);
  return { long: match[2]!, ...(match[1] ? { short: match[1] } : {}), ...(match[3] ? { value: match[3] } : {}) };
}

const GLOBAL = ['--help', '-h', '--version', '-V'];
const SHELLS = ['bash', 'zsh', 'fish'];

function bash(): string {
  const cases = commandList
    .map((c) => {
      const words = c.options.map(parseOptionSpec).flatMap((o) => [`--${o.long}`, ...(o.short ? [`-${o.short}`] : [])]);
      const more = c.name === 'completion' ? `\n      COMPREPLY=($(compgen -W "${SHELLS.join(' ')}" -- "$cur")); return ;;` : ' ;;';
      return `    ${c.name}) options="${words.join(' ')}"${more}`;
    })
    .join('\n');
  return `# bash completion for piimg: piimg completion bash > /etc/bash_completion.d/piimg
_piimg() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" options=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "${[...commandList.map((c) => c.name), ...GLOBAL].join(' ')}" -- "$cur"))
    return
  fi
  case "\${COMP_WORDS[1]}" in
${cases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$options" -- "$cur"))
  else
    COMPREPLY=()
  fi
}
complete -o default -F _piimg piimg
`;
}

const zshQuote = (text: string) => text.replace(/[:'[\]\\]/g, (c) => (c === "'" ? "'\\''" : `\\${c}`));

function zsh(): string {
  const described = commandList.map((c) => `    '${c.name}:${zshQuote(c.summary)}'`).join('\n');
  const cases = commandList
    .map((c) => {
      const specs = c.options.map(parseOptionSpec).map((o) => {
        const names = o.short ? `{-${o.short},--${o.long}}` : `--${o.long}`;
        const value = o.value ? `:${o.value.toLowerCase()}:${o.value === 'FILE' ? '_files' : ''}` : '';
        return `'${o.short ? `(-${o.short} --${o.long})'${names}'` : names}${value}'`;
      });
      const rest = c.name === 'completion' ? `'1:shell:(${SHELLS.join(' ')})'` : "'*:file:_files'";
      return `    ${c.name}) _arguments -s ${[...specs, rest].join(' ')} ;;`;
    })
    .join('\n');
  return `#compdef piimg
# zsh completion for piimg: piimg completion zsh > "\${fpath[1]}/_piimg"
_piimg() {
  local -a commands
  commands=(
${described}
  )
  if (( CURRENT == 2 )); then
    _describe -t commands 'piimg command' commands
    _arguments '(- *)'{-h,--help}'[show help]' '(- *)'{-V,--version}'[print the version]'
    return
  fi
  shift words
  (( CURRENT-- ))
  case $words[1] in
${cases}
  esac
}
if [ "$funcstack[1]" = "_piimg" ]; then
  _piimg "$@"
else
  compdef _piimg piimg
fi
`;
}

const fishQuote = (text: string) => `'${text.replace(/[\\']/g, (c) => `\\${c}`)}'`;

function fish(): string {
  const lines = [
    '# fish completion for piimg: piimg completion fish > ~/.config/fish/completions/piimg.fish',
    'complete -c piimg -f',
    'complete -c piimg -n __fish_use_subcommand -s h -l help -d "show help"',
    'complete -c piimg -n __fish_use_subcommand -s V -l version -d "print the version"',
  ];
  for (const c of commandList) {
    lines.push(`complete -c piimg -n __fish_use_subcommand -a ${c.name} -d ${fishQuote(c.summary)}`);
    const when = `-n '__fish_seen_subcommand_from ${c.name}'`;
    for (const o of c.options.map(parseOptionSpec)) {
      const file = o.value === 'FILE' ? ' -F' : '';
      lines.push(`complete -c piimg ${when}${o.short ? ` -s ${o.short}` : ''} -l ${o.long}${o.value ? ` -r${file}` : ''}`);
    }
    lines.push(c.name === 'completion' ? `complete -c piimg ${when} -a '${SHELLS.join(' ')}'` : `complete -c piimg ${when} -F`);
  }
  return lines.join('\n') + '\n';
}

export const completion: Command = {
  name: 'completion',
  usage,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parse(argv, {}, usage);
    if (wantsHelp(values, io, usage)) return EXIT.ok;
    requirePositionals(positionals, 1, usage);
    const shell = positionals[0]!;
    const script = shell === 'bash' ? bash() : shell === 'zsh' ? zsh() : shell === 'fish' ? fish() : undefined;
    if (script === undefined) throw new UsageError(`unknown shell '${shell}': bash, zsh or fish\n\n${usage}`);
    io.stdout.write(script);
    return EXIT.ok;
  },
};
