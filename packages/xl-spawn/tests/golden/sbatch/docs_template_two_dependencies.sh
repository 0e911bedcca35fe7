#!/bin/bash
#SBATCH --output=time.out
#SBATCH --job-name=cache
#SBATCH --chdir=/scratch/cache/add0123
#SBATCH --get-user-env=L
#SBATCH --partition=s.cmfe
#SBATCH --time=3
#SBATCH --dependency=afterok:5:6
#SBATCH --ntasks=2

/venv/bin/python -m xl_cache.worker /scratch/cache/add0123_i.h5
