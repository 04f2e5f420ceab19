# Chart for tests/bench/run.sh: one bar panel per scenario, from the data
# `dsbench report` writes to <dir>/chart/ (index.tsv + <scenario>.dat).
#   gnuplot -e "dir='bench/results/<run>'" tests/bench/plot.gp
if (!exists("dir")) dir = "."
index = dir . "/chart/index.tsv"
n = int(system("wc -l < '" . index . "'"))
if (n < 1) exit

set terminal pngcairo size 1500,950 font "sans,9"
set output dir . "/results.png"
set datafile separator " "
set style fill solid 0.85 border -1
set boxwidth 0.7
set yrange [0:*]
set offsets 0.5, 0.5, graph 0.12, 0
set xtics rotate by -25 nomirror noenhanced
set ytics nomirror
set grid ytics
unset key

color(s) = s eq "ceiling" ? 0x9e9e9e : \
           s eq "ceiling-hdrs" ? 0xcfcfcf : \
           s eq "ours-mem" ? 0x1565c0 : \
           s eq "ours-disk" ? 0x64b5f6 : \
           s eq "node-mem" ? 0x2e7d32 : \
           s eq "node-disk" ? 0x81c784 : \
           s eq "goplugin-mem" ? 0xe65100 : 0xffb74d
label(v) = v >= 100 ? sprintf("%.0f", v) : sprintf("%.2g", v)

cols = n > 4 ? 3 : n
rows = int(ceil(n / (cols * 1.0)))
set multiplot layout rows, cols title "durable-streams-server vs ceiling (Caddy respond / file_server) and references" font "sans,12" noenhanced \
    margins 0.05, 0.98, 0.07, 0.92 spacing 0.05, 0.11
do for [i = 1:n] {
  name = system(sprintf("sed -n '%dp' '%s' | cut -f1", i, index))
  ttl = system(sprintf("sed -n '%dp' '%s' | cut -f2", i, index))
  set title ttl noenhanced
  file = dir . "/chart/" . name . ".dat"
  plot file using 0:2:(color(strcol(1))):xtic(1) with boxes lc rgb variable, \
       file using 0:2:(label($2)) with labels offset 0,0.6
}
unset multiplot
