# gnuplot script for jobs/scaling.sh: speed-up and efficiency against P, with the ideal lines.
# usage: gnuplot -e "summary='summary.csv'; out='scaling.png'; cores=2" jobs/plot_scaling.gp
if (!exists("summary")) summary = 'summary.csv'
if (!exists("out")) out = 'scaling.png'
if (!exists("cores")) cores = 0
set datafile separator ","
set terminal pngcairo size 1400,600 font ",11"
set output out
if (!exists("title")) title = "chargan scaling"
set multiplot layout 1,2 title title noenhanced
set logscale x 2
set xlabel "ranks P"
set grid
set key top left
sel(mode, model, col) = (strcol(1) eq mode && strcol(2) eq model) ? column(col) : NaN
set xrange [0.8:10]
set ylabel "speed-up (images/s vs P = 1)"
set logscale y 2
set yrange [0.25:16]
plot x title "ideal" with lines dt 2 lc rgb "black", \
     (cores > 0 ? (x < cores ? x : cores) : NaN) title sprintf("cores (%d)", cores) with lines dt 3 lw 2 lc rgb "dark-gray", \
     summary every ::1 using 3:(sel("strong","seed",12)) title "strong, seed" with linespoints lw 2 pt 7, \
     summary every ::1 using 3:(sel("strong","small",12)) title "strong, small" with linespoints lw 2 pt 5, \
     summary every ::1 using 3:(sel("weak","seed",12)) title "weak, seed" with linespoints lw 2 pt 9 dt 4, \
     summary every ::1 using 3:(sel("weak","small",12)) title "weak, small" with linespoints lw 2 pt 11 dt 4
set ylabel "parallel efficiency (speed-up / P)"
unset logscale y
set yrange [0:1.2]
set key top right
plot 1 title "ideal" with lines dt 2 lc rgb "black", \
     (cores > 0 ? (x < cores ? 1 : cores / x) : NaN) title "cores / P (best possible)" with lines dt 3 lw 2 lc rgb "dark-gray", \
     summary every ::1 using 3:(sel("strong","seed",13)) title "strong, seed" with linespoints lw 2 pt 7, \
     summary every ::1 using 3:(sel("strong","small",13)) title "strong, small" with linespoints lw 2 pt 5, \
     summary every ::1 using 3:(sel("weak","seed",13)) title "weak, seed" with linespoints lw 2 pt 9 dt 4, \
     summary every ::1 using 3:(sel("weak","small",13)) title "weak, small" with linespoints lw 2 pt 11 dt 4
unset multiplot
