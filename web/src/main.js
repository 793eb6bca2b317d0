// Placeholder until the page's join flow lands: a terminal, fitted, and window.beach.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { Unicode11Addon } from '@xterm/addon-unicode11';

const terminal = new Terminal({ allowProposedApi: true });
const fit = new FitAddon();
terminal.loadAddon(fit);
terminal.loadAddon(new Unicode11Addon());
terminal.unicode.activeVersion = '11';
terminal.open(document.getElementById('terminal'));
fit.fit();
terminal.write('beach page placeholder');
window.beach = { terminal, state: 'connecting' };
