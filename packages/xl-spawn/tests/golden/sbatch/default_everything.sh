#!/bin/bash
#SBATCH --output=time.out
#SBATCH --job-name=cache
#SBATCH --chdir=/scratch/cache/add0123
#SBATCH --get-user-env=L
#SBATCH --partition=debug
#SBATCH --time=2
#SBATCH --dependency=afterok:11:12:13
#SBATCH --kill-on-invalid-dep=yes
#SBATCH --mem=8G
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=2
#SBATCH --nodes=1
#SBATCH --exclusive

/venv/bin/python -m xl_cache.worker /scratch/cache/add0123_i.h5
